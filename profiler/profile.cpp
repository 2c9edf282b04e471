// profile.json and links.json, both ways (profile.hpp, docs/profiles.md).
#include "profiler/profile.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <tuple>
#include <utility>

#include "common/error.hpp"
#include "common/version.hpp"

namespace strata::profiler {

using json::Json;
using json::ObjectReader;

namespace {

const char* const kOpProfileKind = "strata-op-profile";
const char* const kLinkProfileKind = "strata-link-profile";

// The enumerator of E named `name` among E(0) .. E(count - 1), else a ConfigError.
template <class E, class NameOf>
E enum_named(const std::string& name, int count, NameOf name_of, const std::string& field) {
  std::string known;
  for (int i = 0; i < count; ++i) {
    const auto e = static_cast<E>(i);
    if (name == name_of(e)) return e;
    known += std::string(known.empty() ? "" : ", ") + "\"" + name_of(e) + "\"";
  }
  json::fail(field, name, "unknown; expected one of " + known);
}

void check_header(ObjectReader& r, const char* kind) {
  const long long version = r.get_int("schema_version");
  if (version != kProfileSchemaVersion) {
    json::fail(r.field("schema_version"), version,
               "this Strata reads version " + std::to_string(kProfileSchemaVersion));
  }
  const std::string k = r.get_string("kind");
  if (k != kind) json::fail(r.field("kind"), k, std::string("must be \"") + kind + "\"");
}

Json measured_on_json(const MeasuredOn& m) {
  return {{"device", m.device},        {"device_kind", m.device_kind}, {"host", m.host},
          {"date", m.date},            {"strata_version", m.strata_version},
          {"libraries", m.libraries}};
}

MeasuredOn read_measured_on(ObjectReader r) {
  r.finish({"device", "device_kind", "host", "date", "strata_version", "libraries"});
  MeasuredOn m;
  m.device = r.get_string("device");
  if (m.device.empty()) json::fail(r.field("device"), m.device, "must name the device measured");
  m.device_kind = r.get_string("device_kind");
  if (m.device_kind != "cpu" && m.device_kind != "gpu") {
    json::fail(r.field("device_kind"), m.device_kind, "must be \"cpu\" or \"gpu\"");
  }
  m.host = r.get_string("host");
  m.date = r.get_string("date");
  m.strata_version = r.get_string("strata_version");
  const Json& libs = r.get_raw("libraries");
  if (!libs.is_object()) json::fail(r.field("libraries"), libs, "must be an object of strings");
  for (const auto& [name, v] : libs.items()) {
    if (!v.is_string()) {
      json::fail(r.field("libraries") + "." + json::show_key(name), v, "must be a string");
    }
    m.libraries[name] = v.get<std::string>();
  }
  return m;
}

const Json& list_of(ObjectReader& r, const std::string& key) {
  const Json& list = r.get_raw(key);
  if (!list.is_array()) json::fail(r.field(key), list, "must be a list");
  return list;
}

// Physical ranges of the measured numbers (docs/profiles.md): a time the simulator can add up,
// a message size and a bandwidth a link can have.
double in_range(ObjectReader& r, const std::string& key, double lo, double hi,
                const std::string& rule) {
  const double v = r.get_number(key);
  if (!(v >= lo && v <= hi)) json::fail(r.field(key), v, rule);
  return v;
}

double seconds(ObjectReader& r, const std::string& key) {
  return in_range(r, key, 1e-12, 1e5, "must be a time from 1e-12 to 1e+05 s");
}

int count_in(ObjectReader& r, const std::string& key, long long lo, long long hi) {
  const long long v = r.get_int(key);
  if (v < lo || v > hi) {
    json::fail(r.field(key), v,
               "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  return static_cast<int>(v);
}

template <class Parse>
auto parse_in(const Json& j, const std::string& file, Parse parse) {
  try {
    return parse(j);
  } catch (const ConfigError& e) {
    throw ConfigError(file + ": " + e.what());
  }
}

}  // namespace

// ---- profile.json -------------------------------------------------------------------------

Json op_profile_to_json(const OpProfile& p) {
  Json ops = Json::array();
  for (const OpMeasurement& m : p.ops) {
    ops.push_back({{"op", strategies::op_kind_name(m.key.kind)},
                   {"dtype", strategies::dtype_name(m.key.dtype)},
                   {"flags", m.key.flags},
                   {"n_in", m.key.n_in},
                   {"n_out", m.key.n_out},
                   {"dims", m.key.dims},
                   {"median_s", m.median_s},
                   {"min_s", m.min_s},
                   {"max_s", m.max_s},
                   {"repetitions", m.repetitions}});
  }
  return {{"schema_version", kProfileSchemaVersion},
          {"kind", kOpProfileKind},
          {"measured_on", measured_on_json(p.on)},
          {"settings",
           {{"warmup", p.warmup}, {"repetitions", p.repetitions}, {"trials", p.trials}}},
          {"plan", {{"model", p.model}, {"strategy", p.strategy}, {"cluster", p.cluster}}},
          {"ops", ops}};
}

OpProfile op_profile_from_json(const Json& j, const std::string& file) {
  return parse_in(j, file, [](const Json& doc) {
    ObjectReader r(doc, "profile");
    r.finish({"schema_version", "kind", "measured_on", "settings", "plan", "ops"});
    check_header(r, kOpProfileKind);
    OpProfile p;
    p.on = read_measured_on(r.get_object("measured_on"));
    ObjectReader settings = r.get_object("settings");
    settings.finish({"warmup", "repetitions", "trials"});
    p.warmup = count_in(settings, "warmup", 0, 1000000);
    p.repetitions = count_in(settings, "repetitions", 1, 1000000);
    // Absent before trials; a repetition count fits an int.
    const long long trials = settings.get_int_or("trials", 1);
    p.trials = static_cast<int>(std::clamp<long long>(trials, 0, 1000001));
    if (trials < 1 || p.trials > p.repetitions) {
      json::fail(settings.field("trials"), trials, "must be from 1 to repetitions");
    }
    ObjectReader plan = r.get_object("plan");
    plan.finish({"model", "strategy", "cluster"});
    p.model = plan.get_string("model");
    p.strategy = plan.get_string("strategy");
    p.cluster = plan.get_string("cluster");
    const Json& ops = list_of(r, "ops");
    for (std::size_t i = 0; i < ops.size(); ++i) {
      ObjectReader o(ops[i], "profile.ops[" + std::to_string(i) + "]");
      o.finish({"op", "dtype", "flags", "n_in", "n_out", "dims", "median_s", "min_s", "max_s",
                "repetitions"});
      OpMeasurement m;
      m.key.kind = enum_named<strategies::OpKind>(
          o.get_string("op"), static_cast<int>(strategies::OpKind::kCopy) + 1,
          strategies::op_kind_name, o.field("op"));
      m.key.dtype = enum_named<strategies::DType>(
          o.get_string("dtype"), static_cast<int>(strategies::DType::kFp8) + 1,
          strategies::dtype_name, o.field("dtype"));
      const long long flags = o.get_int("flags"), n_in = o.get_int("n_in"), n_out = o.get_int("n_out");
      if (flags < 0 || flags > 255) json::fail(o.field("flags"), flags, "must be 0 to 255");
      if (n_in < 0 || n_in > 255) json::fail(o.field("n_in"), n_in, "must be 0 to 255");
      if (n_out < 0 || n_out > 255) json::fail(o.field("n_out"), n_out, "must be 0 to 255");
      m.key.flags = static_cast<std::uint8_t>(flags);
      m.key.n_in = static_cast<std::uint8_t>(n_in);
      m.key.n_out = static_cast<std::uint8_t>(n_out);
      const Json& dims = o.get_raw("dims");
      if (!dims.is_array() || dims.size() != m.key.dims.size()) {
        json::fail(o.field("dims"), dims, "must be a list of 6 integers (Op::dims)");
      }
      for (std::size_t d = 0; d < dims.size(); ++d) {
        const Json& v = dims[d];
        constexpr std::uint64_t kMaxDim = 1ULL << 40;  // no tensor has 10^12 rows
        const bool ok = v.is_number_unsigned()  ? v.get<std::uint64_t>() <= kMaxDim
                        : v.is_number_integer() ? v.get<long long>() >= 0 &&
                                                      v.get<long long>() <= static_cast<long long>(kMaxDim)
                                                : false;
        if (!ok) {
          json::fail(o.field("dims") + "[" + std::to_string(d) + "]", dims[d],
                     "must be an integer from 0 to 2^40");
        }
        m.key.dims[d] = dims[d].get<std::int64_t>();
      }
      m.median_s = seconds(o, "median_s");
      m.min_s = seconds(o, "min_s");
      m.max_s = seconds(o, "max_s");
      if (!(m.min_s <= m.median_s && m.median_s <= m.max_s)) {
        json::fail(o.field("median_s"), m.median_s,
                   "must lie between min_s (" + json::show(m.min_s) + ") and max_s (" +
                       json::show(m.max_s) + ")");
      }
      m.repetitions = count_in(o, "repetitions", 1, 1000000000);
      p.ops.push_back(m);
    }
    return p;
  });
}

OpProfile read_op_profile(const std::string& path) {
  return op_profile_from_json(json::parse_file(path), path);
}

// ---- links.json ---------------------------------------------------------------------------

const char* link_collective_name(LinkCollective c) {
  switch (c) {
    case LinkCollective::kAllReduce: return "all_reduce";
    case LinkCollective::kAllGather: return "all_gather";
    case LinkCollective::kReduceScatter: return "reduce_scatter";
    case LinkCollective::kAllToAll: return "all_to_all";
    case LinkCollective::kBroadcast: return "broadcast";
    case LinkCollective::kSendRecv: return "send_recv";
  }
  return "?";
}

double busbw_factor(LinkCollective c, int ranks) {
  const double n = ranks;
  switch (c) {
    case LinkCollective::kAllReduce: return 2.0 * (n - 1) / n;
    case LinkCollective::kAllGather:
    case LinkCollective::kReduceScatter:
    case LinkCollective::kAllToAll: return (n - 1) / n;
    case LinkCollective::kBroadcast:
    case LinkCollective::kSendRecv: return 1.0;
  }
  return 1.0;
}

namespace {

// Weighted least squares of time = a + x / b over x = bytes x busbw factor (weight(t) per point);
// {a, 1/b}, the slope through the origin when the intercept would be negative.
std::pair<double, double> least_squares(const LinkCurve& c, double (*weight)(double)) {
  const double factor = busbw_factor(c.collective, c.ranks);
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const LinkPoint& p : c.points) {
    const double x = p.bytes * factor, w = weight(p.time_s);
    n += w;
    sx += w * x;
    sy += w * p.time_s;
    sxx += w * x * x;
    sxy += w * x * p.time_s;
  }
  const double det = n * sxx - sx * sx;
  STRATA_CHECK(c.points.size() >= 2 && det > 0, "fit_curve needs two distinct sizes");
  double slope = (n * sxy - sx * sy) / det;
  double latency = (sy - slope * sx) / n;
  if (latency < 0) {  // no negative latency: the slope through the origin instead
    latency = 0;
    slope = sxy / sxx;
  }
  return {latency, slope};
}

double relative_weight(double t) { return 1.0 / (t * t); }
double absolute_weight(double) { return 1.0; }

}  // namespace

LinkFit fit_curve(const LinkCurve& c) {
  // In relative error first (each point weighted 1 / time^2): sizes span 8 bytes to hundreds of
  // MiB, and an absolute fit lets the largest sizes alone decide, leaving the latency to their
  // rounding. Where noise on the small sizes (weighted most) leaves that fit without a
  // bandwidth, the absolute fit, which the large sizes decide, gives it.
  auto [latency, slope] = least_squares(c, relative_weight);
  if (!(slope > 0)) std::tie(latency, slope) = least_squares(c, absolute_weight);
  LinkFit f;
  f.latency_s = latency;
  f.busbw_Bps = slope > 0 ? 1.0 / slope : 0;
  return f;
}

Json link_profile_to_json(const LinkProfile& p) {
  Json curves = Json::array();
  for (const LinkCurve& c : p.curves) {
    Json points = Json::array();
    const double factor = busbw_factor(c.collective, c.ranks);
    for (const LinkPoint& x : c.points) {
      points.push_back({{"bytes", static_cast<long long>(std::llround(x.bytes))},
                        {"time_s", x.time_s},
                        {"algbw_GBps", x.algbw_Bps() / 1e9},
                        {"busbw_GBps", x.algbw_Bps() * factor / 1e9}});
    }
    curves.push_back({{"collective", link_collective_name(c.collective)},
                      {"ranks", c.ranks},
                      {"fabric", c.fabric},
                      {"points", points},
                      {"fit", {{"latency_s", c.fit.latency_s}, {"busbw_GBps", c.fit.busbw_Bps / 1e9}}}});
  }
  return {{"schema_version", kProfileSchemaVersion},
          {"kind", kLinkProfileKind},
          {"measured_on", measured_on_json(p.on)},
          {"backend", p.backend},
          {"curves", curves}};
}

LinkProfile link_profile_from_json(const Json& j, const std::string& file) {
  return parse_in(j, file, [](const Json& doc) {
    ObjectReader r(doc, "links");
    r.finish({"schema_version", "kind", "measured_on", "backend", "curves"});
    check_header(r, kLinkProfileKind);
    LinkProfile p;
    p.on = read_measured_on(r.get_object("measured_on"));
    p.backend = r.get_string("backend");
    if (p.backend != "mpi" && p.backend != "nccl" && p.backend != "nccl-tests") {
      json::fail(r.field("backend"), p.backend, "must be \"mpi\", \"nccl\" or \"nccl-tests\"");
    }
    const Json& curves = list_of(r, "curves");
    for (std::size_t i = 0; i < curves.size(); ++i) {
      ObjectReader c(curves[i], "links.curves[" + std::to_string(i) + "]");
      c.finish({"collective", "ranks", "fabric", "points", "fit"});
      LinkCurve curve;
      curve.collective = enum_named<LinkCollective>(c.get_string("collective"), kNumLinkCollectives,
                                                    link_collective_name, c.field("collective"));
      const long long ranks = c.get_int("ranks");
      if (ranks < 2 || ranks > (1 << 20)) {
        json::fail(c.field("ranks"), ranks, "a group of 2 to 1048576 ranks");
      }
      curve.ranks = static_cast<int>(ranks);
      curve.fabric = c.get_string("fabric");
      if (curve.fabric.empty()) json::fail(c.field("fabric"), curve.fabric, "must name a fabric");
      const Json& points = list_of(c, "points");
      for (std::size_t k = 0; k < points.size(); ++k) {
        ObjectReader x(points[k], c.field("points") + "[" + std::to_string(k) + "]");
        x.finish({"bytes", "time_s", "algbw_GBps", "busbw_GBps"});
        LinkPoint pt;
        pt.bytes = in_range(x, "bytes", 1, 1e15, "must be a message size from 1 B to 1e+15 B");
        pt.time_s = seconds(x, "time_s");
        x.accept("algbw_GBps");  // derived; written for people
        x.accept("busbw_GBps");
        if (!curve.points.empty() && !(pt.bytes > curve.points.back().bytes)) {
          json::fail(x.field("bytes"), pt.bytes, "sizes must ascend");
        }
        curve.points.push_back(pt);
      }
      if (curve.points.size() < 2) {
        json::fail(c.field("points"), points, "needs at least two message sizes");
      }
      ObjectReader f = c.get_object("fit");
      f.finish({"latency_s", "busbw_GBps"});
      curve.fit.latency_s = in_range(f, "latency_s", 0, 1, "must be from 0 to 1 s");
      curve.fit.busbw_Bps =
          in_range(f, "busbw_GBps", 1e-6, 1e6, "must be from 1e-06 to 1e+06 GB/s (1 kB/s to 1 PB/s)") *
          1e9;
      p.curves.push_back(curve);
    }
    return p;
  });
}

LinkProfile read_link_profile(const std::string& path) {
  return link_profile_from_json(json::parse_file(path), path);
}

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

}  // namespace strata::profiler
