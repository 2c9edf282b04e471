// Strict JSON reading: syntax errors with line and column, typed getters, unknown keys.
#include "common/json.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "common/error.hpp"
#include "common/hash.hpp"
#include "common/units.hpp"

namespace strata::json {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Json, SyntaxErrorNamesLineAndColumn) {
  const std::string msg = error_of([] { parse("{\n  \"a\": 1,\n  \"b\": ]\n}", "x.json"); });
  EXPECT_NE(msg.find("x.json: JSON syntax error at line 3, column 8"), std::string::npos) << msg;
}

TEST(Json, TypedGettersNameFieldAndValue) {
  const Json j = parse(R"({"n": 3.5, "b": "yes", "s": 4, "i": 8.0, "o": []})", "t");
  ObjectReader r(j, "strategy");
  EXPECT_EQ(error_of([&] { r.get_int("n"); }), "strategy.n = 3.5: must be an integer");
  EXPECT_EQ(error_of([&] { r.get_bool("b"); }), "strategy.b = \"yes\": must be true or false");
  EXPECT_EQ(error_of([&] { r.get_string("s"); }), "strategy.s = 4: must be a string");
  EXPECT_EQ(r.get_int("i"), 8);
  EXPECT_EQ(error_of([&] { r.get_object("o"); }), "strategy.o = []: must be a JSON object");
  EXPECT_EQ(error_of([&] { r.get_int("missing"); }), "strategy.missing: required key is missing");
  EXPECT_EQ(r.get_int_or("absent", 7), 7);
}

TEST(Json, UnknownKeysAreErrorsButProvenanceIsAllowed) {
  const Json j = parse(R"({"tp": 2, "source": "paper", "notes": ["a", "b"], "tpp": 1})", "t");
  ObjectReader r(j, "strategy");
  EXPECT_EQ(r.get_int("tp"), 2);
  const std::string msg = error_of([&] { r.finish({"tp", "pp"}); });
  EXPECT_NE(msg.find("strategy.tpp: unknown key (known keys: tp, pp"), std::string::npos) << msg;
  const Json bad = parse(R"({"source": 3})", "t");
  EXPECT_NE(error_of([&] { ObjectReader(bad, "model"); }).find("model.source = 3"),
            std::string::npos);
}

TEST(Json, FileErrors) {
  EXPECT_EQ(error_of([] { parse_file("/nonexistent/x.json"); }),
            "/nonexistent/x.json: cannot open file for reading");
}

TEST(Common, UnitsAndHash) {
  EXPECT_EQ(units::format_bytes(1.5 * units::kGiB), "1.50 GiB");
  EXPECT_EQ(units::format_bytes(512), "512 B");
  EXPECT_EQ(units::format_flops(4.45e21), "4.45 ZFLOP");
  EXPECT_EQ(units::format_count(174.6e9), "174.60 B");
  EXPECT_EQ(units::format_count(218496), "218.50 K");
  EXPECT_EQ(units::format_count(12), "12");
  EXPECT_EQ(fnv1a64_hex(""), "cbf29ce484222325");  // the FNV-1a offset basis
  EXPECT_NE(fnv1a64_hex("a"), fnv1a64_hex("b"));
}

}  // namespace
}  // namespace strata::json
