// Strict JSON reading: syntax errors with line and column, typed getters, unknown keys.
#include "common/json.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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

// Regression: a 100,000-deep array given as a spec crashed (SIGSEGV) in the error formatter,
// which rendered the whole value recursively before cutting it. Nesting is now refused at parse
// time, before any value is built, and show() renders with bounded work.
TEST(Json, DeepNestingIsRefusedAtParseTimeNamingTheRule) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string msg = error_of([&] { parse(deep, "deep.json"); });
  EXPECT_NE(msg.find("deep.json: JSON nested deeper than 64 levels at line 1, column 65"),
            std::string::npos)
      << msg;
  // As deep as kMaxDepth is accepted, one more level is not; brackets in strings do not count.
  const std::string at_limit = std::string(kMaxDepth, '[') + std::string(kMaxDepth, ']');
  EXPECT_NO_THROW(parse(at_limit, "x"));
  EXPECT_NE(error_of([&] { parse("[" + at_limit + "]", "x"); }).find("deeper than 64"),
            std::string::npos);
  EXPECT_NO_THROW(parse(R"({"a": ")" + std::string(1000, '[') + R"("})", "x"));
}

TEST(Json, ShowIsBoundedWhateverTheValue) {
  Json deep = Json::array();
  for (int i = 0; i < 100000; ++i) deep = Json::array({std::move(deep)});  // built, not parsed
  const std::string d = show(deep);
  EXPECT_LE(d.size(), 60u);
  EXPECT_EQ(d.substr(0, 10), "[[[[[[[[[[");
  Json wide = Json::array();
  for (int i = 0; i < 200000; ++i) wide.push_back(i);
  EXPECT_EQ(show(wide), "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,...");
  EXPECT_EQ(show(Json(std::string(100000, 'x'))).size(), 60u);
  // A cut never splits a UTF-8 character, and bytes that are not UTF-8 do not throw.
  const std::string cut = show(Json(std::string(100, 'a') + "\xc3\xa9"));
  EXPECT_EQ(cut.size(), 60u);
  EXPECT_NO_THROW(show(Json(std::string("\xff\xfe", 2))));
  EXPECT_EQ(show(Json("\xc3")), "\"\xef\xbf\xbd\"");  // U+FFFD replaces the broken byte
  EXPECT_EQ(show(Json({{"k", 1}})), "{\"k\":1}");
}

// Regression: "1e999" escaped as nlohmann's out_of_range (an internal error, exit 70).
TEST(Json, OverflowingNumberNamesTheField) {
  const std::string text = "{\n  \"gpu\": {\"peak_tflops\": {\"bf16\": 1e999}},\n  \"n\": 1\n}";
  EXPECT_EQ(error_of([&] { parse(text, "c.json"); }),
            "c.json: gpu.peak_tflops.bf16 = 1e999 at line 2, column 35: number out of range (a "
            "JSON number here must be within +-1.8e308)");
  EXPECT_NE(error_of([] { parse(R"({"a": [1, 2, -1e400]})", "x"); }).find("a[2] = -1e400"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse("1e999", "x"); }).find("x: the value = 1e999"),
            std::string::npos);
  // Tiny numbers round to zero (a double's underflow) and reach the field's own range check.
  EXPECT_EQ(parse("1e-999", "x").get<double>(), 0.0);
}

TEST(Json, SyntaxErrorNamesTheEnclosingField) {
  const std::string msg = error_of([] { parse(R"({"gpu": {"peak_tflops": {"bf16": 3x}}})", "c"); });
  EXPECT_NE(msg.find("c: JSON syntax error at line 1, column 35 (in gpu.peak_tflops.bf16)"),
            std::string::npos)
      << msg;
}

// A directory, FIFO or device is named for what it is, instead of hanging (a FIFO with no
// writer), reading forever (/dev/zero) or failing with a confusing message.
TEST(Json, SpecialFilesSayWhatTheyAre) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("strata-json-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  EXPECT_EQ(error_of([&] { parse_file(dir.string()); }),
            dir.string() + " is a directory, not a regular file");
  const std::string fifo = (dir / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(error_of([&] { parse_file(fifo); }), fifo + " is a FIFO (named pipe), not a regular file");
  EXPECT_EQ(error_of([] { parse_file("/dev/zero"); }),
            "/dev/zero is a character device, not a regular file");
  EXPECT_EQ(special_file_kind("/nonexistent"), "");
  std::ofstream(dir / "f.json") << "{}";
  EXPECT_EQ(special_file_kind((dir / "f.json").string()), "");
  std::filesystem::remove_all(dir);
}

TEST(Json, UnknownKeyIsCutInTheMessage) {
  const Json j = parse("{\"" + std::string(10000, 'k') + "\": 1}", "t");
  ObjectReader r(j, "model");
  const std::string msg = error_of([&] { r.finish({"a"}); });
  EXPECT_LT(msg.size(), 200u);
  EXPECT_NE(msg.find("unknown key"), std::string::npos);
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
