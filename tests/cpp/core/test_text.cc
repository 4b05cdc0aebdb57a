#include <doctest/doctest.h>

#include "core/hash.hpp"
#include "core/text.hpp"

using namespace mlops::detail;

TEST_CASE("utf8_error accepts valid UTF-8 and names what is wrong otherwise") {
  CHECK_FALSE(utf8_error("plain ascii").has_value());
  CHECK_FALSE(utf8_error("kunde-\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80").has_value());  // ä € 😀
  CHECK(utf8_error("\xc3").value().find("truncated") != std::string::npos);
  CHECK(utf8_error("\xc0\xaf").value().find("lead byte") != std::string::npos);         // overlong '/'
  CHECK(utf8_error("\xe0\x80\xaf").value().find("overlong") != std::string::npos);
  CHECK(utf8_error("\xed\xa0\x80").value().find("surrogate") != std::string::npos);
  CHECK(utf8_error("\xf4\x90\x80\x80").value().find("above U+10FFFF") != std::string::npos);
  CHECK(utf8_error("a\x80").value().find("offset 1") != std::string::npos);
}

TEST_CASE("find_control_character finds C0, DEL and C1 controls") {
  CHECK_FALSE(find_control_character("fine name \xc3\xa4").has_value());
  CHECK(find_control_character("a\tb").value() == 1);
  CHECK(find_control_character("ab\x7f").value() == 2);
  CHECK(find_control_character("x\xc2\x85").value() == 1);  // NEL
  CHECK_FALSE(find_control_character("\xc2\xa0").has_value());  // NBSP is not a control
}

TEST_CASE("quote_for_message shows control bytes escaped and cuts long text") {
  CHECK(quote_for_message("a\nb") == "'a\\x0ab'");
  CHECK(quote_for_message(std::string(100, 'x'), 10) == "'xxxxxxxxxx...'");
}

TEST_CASE("digests match known vectors") {
  CHECK(md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(md5_hex("{\"a\":1}") == "bb6cb5c68df4652941caf652a366f2d8" );
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
