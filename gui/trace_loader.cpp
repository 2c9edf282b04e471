// The display reader of trace.json (trace_loader.hpp): a small strict JSON scanner over the
// bytes, filling TimelineEvents as it goes.
#include "gui/trace_loader.hpp"

#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <string_view>

#include "common/error.hpp"
#include "results/trace.hpp"

namespace strata::gui {

namespace {

using namespace std::string_view_literals;
using strategies::Stream;

constexpr int kStreams = 6;  // results/trace.hpp: tid = stream + 6 x lane

class Scanner {
 public:
  Scanner(std::string_view text, const std::string& file) : s_(text), file_(file) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw ConfigError(file_ + ": not a trace Strata can read, at byte " + std::to_string(i_) +
                      ": " + what);
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) {
      ++i_;
    }
  }
  char peek() {
    ws();
    if (i_ >= s_.size()) fail("the file ends too early (cut short?)");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "', found '" + s_[i_] + "'");
    ++i_;
  }
  bool consume(char c) {
    if (peek() != c) return false;
    ++i_;
    return true;
  }
  // A string's contents; `out` only gets them when given (escapes decoded; \u as UTF-8).
  void string(std::string* out) {
    expect('"');
    if (out) out->clear();
    while (true) {
      // The run up to the next quote, backslash or control character, copied at once.
      const std::size_t begin = i_;
      while (i_ < s_.size()) {
        const unsigned char c = static_cast<unsigned char>(s_[i_]);
        if (c == '"' || c == '\\' || c < 0x20) break;
        ++i_;
      }
      if (out) out->append(s_.data() + begin, i_ - begin);
      if (i_ >= s_.size()) fail("a string is not closed (cut short?)");
      const char c = s_[i_++];
      if (c == '"') return;
      if (static_cast<unsigned char>(c) < 0x20) fail("a control character inside a string");
      if (i_ >= s_.size()) fail("a string is not closed (cut short?)");
      const char e = s_[i_++];
      char d = 0;
      switch (e) {
        case '"': d = '"'; break;
        case '\\': d = '\\'; break;
        case '/': d = '/'; break;
        case 'b': d = '\b'; break;
        case 'f': d = '\f'; break;
        case 'n': d = '\n'; break;
        case 'r': d = '\r'; break;
        case 't': d = '\t'; break;
        case 'u': {
          if (i_ + 4 > s_.size()) fail("a \\u escape is cut short");
          unsigned code = 0;
          const auto r = std::from_chars(s_.data() + i_, s_.data() + i_ + 4, code, 16);
          if (r.ptr != s_.data() + i_ + 4) fail("a bad \\u escape");
          i_ += 4;
          if (out) {  // BMP code point as UTF-8 (surrogates kept as they are: names are ASCII)
            if (code < 0x80) {
              out->push_back(static_cast<char>(code));
            } else if (code < 0x800) {
              out->push_back(static_cast<char>(0xC0 | (code >> 6)));
              out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
            } else {
              out->push_back(static_cast<char>(0xE0 | (code >> 12)));
              out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
              out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
            }
          }
          continue;
        }
        default:
          fail(std::string("a bad escape \\") + e);
      }
      if (out) out->push_back(d);
    }
  }
  double number() {
    peek();  // fails at the end of the text: cut short
    double v = 0;
    const char* begin = s_.data() + i_;
    const auto r = std::from_chars(begin, s_.data() + s_.size(), v);
    if (r.ec == std::errc::result_out_of_range) fail("a number out of range");
    if (r.ec != std::errc() || r.ptr == begin) fail("expected a number");
    i_ += static_cast<std::size_t>(r.ptr - begin);
    return v;
  }
  void literal(const char* word) {
    const std::size_t n = std::strlen(word);
    if (s_.compare(i_, n, word) != 0) fail(std::string("expected ") + word);
    i_ += n;
  }
  // Skips any value, nested as deep as it goes (bounded: deeper than 256 is refused).
  void skip(int depth = 0) {
    if (depth > 256) fail("values nested deeper than 256 levels");
    const char c = peek();
    if (c == '"') {
      string(nullptr);
    } else if (c == '{') {
      ++i_;
      if (consume('}')) return;
      do {
        string(nullptr);
        expect(':');
        skip(depth + 1);
      } while (consume(','));
      expect('}');
    } else if (c == '[') {
      ++i_;
      if (consume(']')) return;
      do skip(depth + 1);
      while (consume(','));
      expect(']');
    } else if (c == 't') {
      literal("true");
    } else if (c == 'f') {
      literal("false");
    } else if (c == 'n') {
      literal("null");
    } else {
      number();
    }
  }
  // The text of the next value, skipped.
  std::string_view raw() {
    ws();
    const std::size_t begin = i_;
    skip();
    return s_.substr(begin, i_ - begin);
  }
  bool at_end() {
    ws();
    return i_ >= s_.size();
  }

 private:
  std::string_view s_;
  const std::string& file_;
  std::size_t i_ = 0;
};

// One event of traceEvents, as much as the timeline keeps.
struct EventFields {
  std::string ph, name, thread_name, process_name, str;
  bool has_pid = false, has_tid = false, has_ts = false, has_dur = false, has_task = false;
  double pid = 0, tid = 0, ts = 0, dur = 0;
  TimelineEvent e;
};

// The number of values of an enum whose last value is `last`.
template <typename Enum>
constexpr int count_of(Enum last) {
  return static_cast<int>(last) + 1;
}

// The value of `name_of` named `name`; a ConfigError (at the scanner's byte) when none is.
template <typename Enum>
Enum enum_named(const char* (*name_of)(Enum), const std::string& name, int count,
                const Scanner& sc, const std::string& key) {
  for (int k = 0; k < count; ++k) {
    if (name == name_of(static_cast<Enum>(k))) return static_cast<Enum>(k);
  }
  sc.fail("args." + key + " = \"" + name + "\": not a name Strata writes there");
}

int to_int(double v, const std::string& file, std::size_t index, const char* field) {
  if (!(v >= std::numeric_limits<int>::min() && v <= std::numeric_limits<int>::max()) ||
      v != static_cast<double>(static_cast<long long>(v))) {
    throw ConfigError(file + ": traceEvents[" + std::to_string(index) + "]." + field + " = " +
                      std::to_string(v) + ": must be a whole number");
  }
  return static_cast<int>(v);
}

void read_args(Scanner& sc, EventFields& f) {
  sc.expect('{');
  if (sc.consume('}')) return;
  std::string key;
  do {
    sc.string(&key);
    sc.expect(':');
    TimelineEvent& e = f.e;
    if (key == "task"sv) {
      const double v = sc.number();
      if (!(v >= 0 && v < 4294967296.0)) sc.fail("args.task must be a task id (>= 0)");
      e.task = static_cast<std::uint32_t>(v);
      f.has_task = true;
    } else if (key == "kind"sv || key == "phase"sv || key == "block"sv || key == "collective"sv ||
               key == "purpose"sv) {
      sc.string(&f.str);
      if (key == "kind"sv) e.kind = enum_named(strategies::task_kind_name, f.str, count_of(strategies::TaskKind::kRecv), sc, key);
      if (key == "phase"sv) e.phase = enum_named(strategies::phase_name, f.str, count_of(strategies::Phase::kNone), sc, key);
      if (key == "block"sv) e.block = enum_named(strategies::block_name, f.str, count_of(strategies::Block::kOptimizer), sc, key);
      if (key == "collective"sv) {
        e.collective = enum_named(strategies::collective_name, f.str,
                                  count_of(strategies::CollectiveKind::kRingShift), sc, key);
      }
      if (key == "purpose"sv) e.purpose = enum_named(strategies::purpose_name, f.str, count_of(strategies::Purpose::kReshard), sc, key);
    } else if (key == "layer"sv) {
      e.layer = static_cast<std::int32_t>(sc.number());
    } else if (key == "micro_batch"sv) {
      e.micro_batch = static_cast<std::int32_t>(sc.number());
    } else if (key == "chunk"sv) {
      e.chunk = static_cast<std::uint16_t>(sc.number());
    } else if (key == "flops"sv) {
      e.flops = sc.number();
    } else if (key == "bytes"sv) {
      e.bytes = sc.number();
    } else if (key == "peer"sv) {
      e.peer = static_cast<std::int32_t>(sc.number());
    } else if (key == "waited_us"sv) {
      e.waited_s = sc.number() / 1e6;
    } else if (key == "group"sv) {
      sc.expect('[');
      e.group_size = 0;
      if (!sc.consume(']')) {
        do {
          sc.number();
          ++e.group_size;
        } while (sc.consume(','));
        sc.expect(']');
      }
    } else if (key == "name"sv) {  // metadata events' args
      sc.string(&f.thread_name);
    } else {
      sc.skip();
    }
  } while (sc.consume(','));
  sc.expect('}');
}

void read_other_data(Scanner& sc, const std::string& file) {
  const std::string_view raw = sc.raw();
  const json::Json j = json::parse(std::string(raw), file + ": otherData");
  if (!j.is_object() || j.value("kind", "") != results::kTraceKind) {
    throw ConfigError(file + ": otherData.kind must be \"" + results::kTraceKind +
                      "\" (a trace written by Strata)");
  }
  if (!j.contains("schema_version") || !j["schema_version"].is_number_integer() ||
      j["schema_version"].get<int>() != results::kTraceSchemaVersion) {
    throw ConfigError(file + ": otherData.schema_version must be " +
                      std::to_string(results::kTraceSchemaVersion));
  }
}

}  // namespace

TimelineData parse_timeline(const std::string& text, const std::string& file) {
  Scanner sc(text, file);
  TimelineData data;
  bool events_seen = false, other_seen = false;
  sc.expect('{');
  std::string key;
  if (!sc.consume('}')) {
    do {
      sc.string(&key);
      sc.expect(':');
      if (key == "otherData"sv) {
        read_other_data(sc, file);
        other_seen = true;
      } else if (key == "traceEvents"sv) {
        events_seen = true;
        sc.expect('[');
        if (sc.consume(']')) continue;
        std::size_t index = 0;
        EventFields f;
        std::string field;
        do {
          f = EventFields{};
          sc.expect('{');
          if (!sc.consume('}')) {
            do {
              sc.string(&field);
              sc.expect(':');
              if (field == "ph"sv) {
                sc.string(&f.ph);
              } else if (field == "name"sv) {
                sc.string(&f.name);
              } else if (field == "pid"sv) {
                f.pid = sc.number();
                f.has_pid = true;
              } else if (field == "tid"sv) {
                f.tid = sc.number();
                f.has_tid = true;
              } else if (field == "ts"sv) {
                f.ts = sc.number();
                f.has_ts = true;
              } else if (field == "dur"sv) {
                f.dur = sc.number();
                f.has_dur = true;
              } else if (field == "args"sv) {
                read_args(sc, f);
              } else {
                sc.skip();
              }
            } while (sc.consume(','));
            sc.expect('}');
          }
          auto missing = [&](const char* what) {
            throw ConfigError(file + ": traceEvents[" + std::to_string(index) + "]." + what +
                              " is missing");
          };
          if (f.ph == "X"sv) {
            if (!f.has_pid) missing("pid");
            if (!f.has_tid) missing("tid");
            if (!f.has_ts) missing("ts");
            if (!f.has_dur) missing("dur");
            if (!f.has_task) missing("args.task");
            if (!(f.dur >= 0)) {
              throw ConfigError(file + ": traceEvents[" + std::to_string(index) +
                                "].dur = " + std::to_string(f.dur) + ": must be >= 0");
            }
            TimelineEvent& e = f.e;
            e.rank = to_int(f.pid, file, index, "pid");
            const int tid = to_int(f.tid, file, index, "tid");
            if (tid < 0) {
              throw ConfigError(file + ": traceEvents[" + std::to_string(index) + "].tid = " +
                                std::to_string(tid) + ": must be >= 0");
            }
            e.stream = static_cast<Stream>(tid % kStreams);
            e.lane = static_cast<std::uint8_t>(std::min(tid / kStreams, 255));
            e.start_s = f.ts / 1e6;
            e.duration_s = f.dur / 1e6;
            data.add_name(e, f.name);
            data.events.push_back(e);
          } else if (f.ph == "M"sv && f.name == "thread_name"sv && f.has_pid && f.has_tid) {
            const int tid = to_int(f.tid, file, index, "tid");
            data.tracks.push_back({to_int(f.pid, file, index, "pid"),
                                   static_cast<Stream>(tid % kStreams), tid / kStreams,
                                   f.thread_name});
          } else if (f.ph.empty()) {
            missing("ph");
          }
          ++index;
        } while (sc.consume(','));
        sc.expect(']');
      } else {
        sc.skip();
      }
    } while (sc.consume(','));
    sc.expect('}');
  }
  if (!sc.at_end()) sc.fail("more after the trace's closing brace");
  if (!events_seen) throw ConfigError(file + ": traceEvents is missing (not a trace)");
  if (!other_seen) throw ConfigError(file + ": otherData is missing (not a trace written by Strata)");
  return data;
}

TimelineData load_timeline(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot be opened");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw ConfigError(path + ": cannot be read (not a regular file?)");
  std::string text(static_cast<std::size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(text.data(), size)) throw ConfigError(path + ": cannot be read");
  return parse_timeline(text, path);
}

}  // namespace strata::gui
