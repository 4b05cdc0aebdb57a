# Installs this build into a fresh prefix, then builds and runs examples/cpp against it with
# find_package(mlops CONFIG REQUIRED), as a user's project would.
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install "${MLOPS_BUILD_DIR}" --prefix "${prefix}" --component Development)
run(${CMAKE_COMMAND} -S "${MLOPS_SOURCE_DIR}/examples/cpp" -B "${WORK_DIR}/build"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build" --parallel 2)
run("${WORK_DIR}/build/02_train")
string(FIND "${last_output}" "customer-3  val_accuracy" trained)
if(trained EQUAL -1)
  message(FATAL_ERROR "02_train did not train its adapters:\n${last_output}")
endif()
run("${WORK_DIR}/build/01_manifest")
message(STATUS "consumer printed:\n${last_output}")
# The md5 of the canonical JSON {"customer-1":3,"customer-2":7}, computed independently of mlops.
string(MD5 expected [[{"customer-1":3,"customer-2":7}]])
string(FIND "${last_output}" "${expected}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "the consumer did not print the manifest's MD5 ${expected}")
endif()
