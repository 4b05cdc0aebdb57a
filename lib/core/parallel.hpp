#pragma once
// Work shared out over a few host threads, with the caller's thread among them.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace mlops::detail {

/// Calls fn(i) for every i in [0, n) on up to `threads` threads (0: the hardware's; never more than n), the
/// calling thread among them, handing out indices in increasing order. When fn returns bool, `false` stops
/// further indices from being handed out. An exception does the same and is rethrown on the caller (the
/// first one) once every thread has finished; calls already under way always finish.
template <class Fn>
void parallel_for(std::size_t n, unsigned threads, Fn&& fn) {
  if (n == 0) return;
  if (threads == 0) threads = std::max(1U, std::thread::hardware_concurrency());
  const std::size_t count = std::min<std::size_t>(threads, n);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    try {
      for (std::size_t i = 0; !stop.load() && (i = next.fetch_add(1)) < n;) {
        if constexpr (std::is_same_v<std::invoke_result_t<Fn&, std::size_t>, bool>) {
          if (!fn(i)) stop = true;
        } else {
          fn(i);
        }
      }
    } catch (...) {
      stop = true;
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(count - 1);
  for (std::size_t t = 1; t < count; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace mlops::detail
