// The nccl-tests import: outputs written by hand in the documented layouts (newer: with `root`
// and `#wrong`, rank lines with `Group`; older: without `root`, `error` columns, rank lines
// without `Group`), 8 ranks on one node and 16 ranks on two, concatenated runs, the refusals with
// their exact messages, and truncated outputs that must fail cleanly.
#include "profiler/nccl_tests.hpp"

#include <gtest/gtest.h>

#include <string>

#include "common/error.hpp"

namespace strata::profiler {
namespace {

// all_reduce_perf, nccl-tests 2.17-style, 8 GPUs of one node. The out-of-place times follow
// time = 20 us + bytes x 1.75 / 100 GB/s (busbw factor 2 (8 - 1) / 8); the in-place ones are 10%
// slower, so reading the wrong half shows. Times >= 10 ms have no decimals, as nccl-tests prints.
const char* const kAllReduce8 = R"(# nccl-tests version 2.17.6 nccl-headers=22807 nccl-library=22807
# Collective test starting: all_reduce_perf
# nThread 1 nGpus 1 minBytes 0 maxBytes 1073741824 step: 8(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
#  Rank  0 Group  0 Pid  41001 on     node1 device  0 [0000:1b:00] NVIDIA H100 80GB HBM3
#  Rank  1 Group  0 Pid  41002 on     node1 device  1 [0000:43:00] NVIDIA H100 80GB HBM3
#  Rank  2 Group  0 Pid  41003 on     node1 device  2 [0000:52:00] NVIDIA H100 80GB HBM3
#  Rank  3 Group  0 Pid  41004 on     node1 device  3 [0000:61:00] NVIDIA H100 80GB HBM3
#  Rank  4 Group  0 Pid  41005 on     node1 device  4 [0000:9d:00] NVIDIA H100 80GB HBM3
#  Rank  5 Group  0 Pid  41006 on     node1 device  5 [0000:c3:00] NVIDIA H100 80GB HBM3
#  Rank  6 Group  0 Pid  41007 on     node1 device  6 [0000:d1:00] NVIDIA H100 80GB HBM3
#  Rank  7 Group  0 Pid  41008 on     node1 device  7 [0000:df:00] NVIDIA H100 80GB HBM3
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
           0             0     float     sum      -1    20.00    0.00    0.00      0    22.00    0.00    0.00      0
           8             2     float     sum      -1    20.00    0.00    0.00      0    22.00    0.00    0.00      0
        1024           256     float     sum      -1    20.02    0.05    0.09      0    22.02    0.05    0.08      0
      131072         32768     float     sum      -1    22.29    5.88   10.29      0    24.52    5.34    9.35      0
    16777216       4194304     float     sum      -1    313.6   53.50   93.62      0    345.0   48.64   85.11      0
   134217728      33554432     float     sum      -1   2368.8   56.66   99.16      0   2605.7   51.51   90.14      0
  1073741824     268435456     float     sum      -1    18810   57.08   99.89      0    20692   51.89   90.81      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 57.58
#
)";

// all_gather_perf as older nccl-tests print it (no "Collective test starting", no Group, no
// root column, "error"), 16 GPUs on two nodes, with NCCL's debug log interleaved. Times follow
// time = 50 us + bytes x (15 / 16) / 20 GB/s; "size" is the gathered output.
const char* const kAllGather16 =
    R"(# nThread 1 nGpus 1 minBytes 1024 maxBytes 268435456 step: 64(factor) warmup iters: 5 iters: 20 validation: 1
#
# Using devices
#   Rank  0 Pid  3868292 on      a0000 device  0 [0x07] NVIDIA A100-SXM4-80GB
#   Rank  1 Pid  3868293 on      a0000 device  1 [0x0b] NVIDIA A100-SXM4-80GB
#   Rank  2 Pid  3868294 on      a0000 device  2 [0x48] NVIDIA A100-SXM4-80GB
#   Rank  3 Pid  3868295 on      a0000 device  3 [0x4c] NVIDIA A100-SXM4-80GB
#   Rank  4 Pid  3868296 on      a0000 device  4 [0x88] NVIDIA A100-SXM4-80GB
#   Rank  5 Pid  3868297 on      a0000 device  5 [0x8b] NVIDIA A100-SXM4-80GB
#   Rank  6 Pid  3868298 on      a0000 device  6 [0xc8] NVIDIA A100-SXM4-80GB
#   Rank  7 Pid  3868299 on      a0000 device  7 [0xcb] NVIDIA A100-SXM4-80GB
#   Rank  8 Pid  3868300 on      a0001 device  0 [0x07] NVIDIA A100-SXM4-80GB
#   Rank  9 Pid  3868301 on      a0001 device  1 [0x0b] NVIDIA A100-SXM4-80GB
#   Rank 10 Pid  3868302 on      a0001 device  2 [0x48] NVIDIA A100-SXM4-80GB
#   Rank 11 Pid  3868303 on      a0001 device  3 [0x4c] NVIDIA A100-SXM4-80GB
#   Rank 12 Pid  3868304 on      a0001 device  4 [0x88] NVIDIA A100-SXM4-80GB
#   Rank 13 Pid  3868305 on      a0001 device  5 [0x8b] NVIDIA A100-SXM4-80GB
#   Rank 14 Pid  3868306 on      a0001 device  6 [0xc8] NVIDIA A100-SXM4-80GB
#   Rank 15 Pid  3868307 on      a0001 device  7 [0xcb] NVIDIA A100-SXM4-80GB
a0000:3868292:3868292 [0] NCCL INFO NCCL version 2.7.8+cuda11.0
#
#                                                     out-of-place                       in-place
#       size         count    type   redop     time   algbw   busbw  error     time   algbw   busbw  error
#        (B)    (elements)                     (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
        1024            16   float    none    50.05    0.02    0.02  0e+00    47.55    0.02    0.02  0e+00
       65536          1024   float    none    53.07    1.23    1.16  0e+00    50.42    1.30    1.22  0e+00
     4194304         65536   float    none    246.6   17.01   15.94  0e+00    234.3   17.90   16.78  0e+00
    67108864       1048576   float    none   3195.7   21.00   19.69  0e+00   3035.9   22.10   20.72  0e+00
   268435456       4194304   float    none    12633   21.25   19.92    N/A    12001   22.37   20.97    N/A
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 11.346
)";

// A short newer-style output of `binary` over two ranks of one host; `rows` follow the header
// (line 7 of the text, so the first row is line 8).
std::string short_output(const std::string& binary, const std::string& rows) {
  return "# Collective test starting: " + binary + "\n" +
         "# nThread 1 nGpus 2 minBytes 1024 maxBytes 4096 step: 2(factor) warmup iters: 5 iters: "
         "20 agg iters: 1 validation: 1 graph: 0\n"
         "# Using devices\n"
         "#  Rank  0 Group  0 Pid 7 on box device  0 [0x1b] NVIDIA H100 80GB HBM3\n"
         "#  Rank  1 Group  0 Pid 7 on box device  1 [0x43] NVIDIA H100 80GB HBM3\n"
         "#                                                  out-of-place         in-place\n"
         "#  size count type redop root time algbw busbw #wrong time algbw busbw #wrong\n" +
         rows;
}
const char* const kTwoRows =
    "1024 256 float sum -1 10.00 0.10 0.10 0 10.00 0.10 0.10 0\n"
    "4096 1024 float sum -1 12.00 0.34 0.34 0 12.00 0.34 0.34 0\n";

NcclImportOptions on_fabric(const std::string& fabric) {
  NcclImportOptions o;
  o.fabric = fabric;
  return o;
}

// The message of the ConfigError `f` throws ("" and a test failure when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

TEST(NcclTestsImport, NewerLayoutEightRanksOnOneNode) {
  const LinkProfile p = import_nccl_tests(kAllReduce8, "ar.txt", on_fabric("nvswitch"));
  EXPECT_EQ(p.backend, "nccl-tests");
  EXPECT_EQ(p.on.device, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(p.on.device_kind, "gpu");
  EXPECT_EQ(p.on.host, "node1");
  EXPECT_EQ(p.on.libraries.at("nccl"), "2.28.7");
  EXPECT_EQ(p.on.libraries.at("nccl-tests"), "2.17.6");
  ASSERT_EQ(p.curves.size(), 1u);
  const LinkCurve& c = p.curves[0];
  EXPECT_EQ(c.collective, LinkCollective::kAllReduce);
  EXPECT_EQ(c.ranks, 8);
  EXPECT_EQ(c.fabric, "nvswitch");
  // The size-0 row is skipped; the out-of-place times, in seconds.
  ASSERT_EQ(c.points.size(), 6u);
  EXPECT_EQ(c.points[0].bytes, 8);
  EXPECT_DOUBLE_EQ(c.points[0].time_s, 20.00e-6);
  EXPECT_EQ(c.points[3].bytes, 16777216);
  EXPECT_DOUBLE_EQ(c.points[3].time_s, 313.6e-6);
  EXPECT_EQ(c.points[5].bytes, 1073741824);
  EXPECT_DOUBLE_EQ(c.points[5].time_s, 18810e-6);
  // The fit recovers the curve the times were made from (to their printed digits).
  EXPECT_NEAR(c.fit.latency_s, 20e-6, 0.5e-6);
  EXPECT_NEAR(c.fit.busbw_Bps, 100e9, 0.1e9);
  // And the profile is a valid links.json.
  EXPECT_EQ(link_profile_to_json(link_profile_from_json(link_profile_to_json(p), "x")),
            link_profile_to_json(p));
}

TEST(NcclTestsImport, OlderLayoutSixteenRanksOnTwoHostsIsTheNetwork) {
  NcclImportOptions o;
  o.collective = "all_gather";
  const LinkProfile p = import_nccl_tests(kAllGather16, "ag.txt", o);
  EXPECT_EQ(p.on.device, "NVIDIA A100-SXM4-80GB");
  EXPECT_EQ(p.on.host, "a0000");
  EXPECT_EQ(p.on.libraries.at("nccl"), "2.7.8+cuda11.0");  // from NCCL's log
  ASSERT_EQ(p.curves.size(), 1u);
  const LinkCurve& c = p.curves[0];
  EXPECT_EQ(c.collective, LinkCollective::kAllGather);
  EXPECT_EQ(c.ranks, 16);
  EXPECT_EQ(c.fabric, "network");
  ASSERT_EQ(c.points.size(), 5u);
  EXPECT_EQ(c.points[0].bytes, 1024);
  EXPECT_DOUBLE_EQ(c.points[0].time_s, 50.05e-6);
  EXPECT_DOUBLE_EQ(c.points[2].time_s, 246.6e-6);
  EXPECT_DOUBLE_EQ(c.points[4].time_s, 12633e-6);
  EXPECT_NEAR(c.fit.latency_s, 50e-6, 0.5e-6);
  EXPECT_NEAR(c.fit.busbw_Bps, 20e9, 0.02e9);
  // The options override what the output says: another fabric, another device name.
  o.fabric = "rail";
  o.device = "A100 80GB";
  const LinkProfile q = import_nccl_tests(kAllGather16, "ag.txt", o);
  EXPECT_EQ(q.curves[0].fabric, "rail");
  EXPECT_EQ(q.on.device, "A100 80GB");
}

TEST(NcclTestsImport, ConcatenatedRunsAreCurvesOfTheirOwn) {
  const std::string text = std::string(kAllReduce8) +
                           short_output("reduce_scatter_perf", kTwoRows) +
                           short_output("./build/sendrecv_perf", kTwoRows);
  const LinkProfile p = import_nccl_tests(text, "all.txt", on_fabric("nvswitch"));
  ASSERT_EQ(p.curves.size(), 3u);
  EXPECT_EQ(p.curves[0].collective, LinkCollective::kAllReduce);
  EXPECT_EQ(p.curves[0].ranks, 8);
  EXPECT_EQ(p.curves[1].collective, LinkCollective::kReduceScatter);
  EXPECT_EQ(p.curves[1].ranks, 2);
  EXPECT_EQ(p.curves[2].collective, LinkCollective::kSendRecv);
  EXPECT_EQ(p.curves[2].points.size(), 2u);
  // Two sizes, so the fit is exact: 1024 bytes (x factor 1) cost 2 us less than 4096.
  EXPECT_NEAR(p.curves[2].fit.busbw_Bps, 3072 / 2e-6, 1);
  EXPECT_NEAR(p.curves[2].fit.latency_s, 10e-6 - 1024 / (3072 / 2e-6), 1e-12);
  // The same collective over the same group twice is refused (27 + 9 + 9 lines before it).
  EXPECT_EQ(error_of([&] {
              import_nccl_tests(text + short_output("sendrecv_perf", kTwoRows), "all.txt",
                                on_fabric("nvswitch"));
            }),
            "all.txt: the run at line 46 measures send_recv over 2 ranks on nvswitch again");
}

TEST(NcclTestsImport, EveryLinkCollectiveByItsBinary) {
  const std::pair<const char*, LinkCollective> cases[] = {
      {"all_reduce_perf", LinkCollective::kAllReduce},
      {"all_gather_perf", LinkCollective::kAllGather},
      {"reduce_scatter_perf", LinkCollective::kReduceScatter},
      {"alltoall_perf", LinkCollective::kAllToAll},
      {"broadcast_perf", LinkCollective::kBroadcast},
      {"sendrecv_perf", LinkCollective::kSendRecv}};
  for (const auto& [binary, collective] : cases) {
    const LinkProfile p =
        import_nccl_tests(short_output(binary, kTwoRows), "t.txt", on_fabric("pcie"));
    ASSERT_EQ(p.curves.size(), 1u) << binary;
    EXPECT_EQ(p.curves[0].collective, collective) << binary;
  }
}

TEST(NcclTestsImport, MalformedRowsNameFileLineTextAndRule) {
  const NcclImportOptions o = on_fabric("nvswitch");
  EXPECT_EQ(error_of([&] {
              import_nccl_tests(short_output("all_reduce_perf", "1024 256 float sum -1 10.00\n"),
                                "t.txt", o);
            }),
            "t.txt: line 8: '1024 256 float sum -1 10.00': expected at least 8 columns (size "
            "count type redop root time algbw busbw, as the header of line 7 says), found 6");
  EXPECT_EQ(error_of([&] {
              import_nccl_tests(
                  short_output("all_reduce_perf",
                               std::string(kTwoRows) + "8192 2048 float sum -1 fast 0.1 0.1 0\n"),
                  "t.txt", o);
            }),
            "t.txt: line 10: '8192 2048 float sum -1 fast 0.1 0.1 0': time (column 6) = 'fast': "
            "expected a number of microseconds > 0");
  EXPECT_EQ(error_of([&] {
              import_nccl_tests(short_output("all_reduce_perf", "1k 256 float sum -1 10 1 1 0\n"),
                                "t.txt", o);
            }),
            "t.txt: line 8: '1k 256 float sum -1 10 1 1 0': size = '1k': expected a whole "
            "number of bytes");
  EXPECT_EQ(error_of([&] {
              import_nccl_tests(short_output("all_reduce_perf", "1024 256 float sum -1 0 1 1 0\n"),
                                "t.txt", o);
            }),
            "t.txt: line 8: '1024 256 float sum -1 0 1 1 0': time (column 6) = '0': expected a "
            "number of microseconds > 0");
  EXPECT_EQ(error_of([&] {
              import_nccl_tests(
                  short_output("all_reduce_perf",
                               std::string(kTwoRows) + "2048 512 float sum -1 11 1 1 0\n"),
                  "t.txt", o);
            }),
            "t.txt: line 10: '2048 512 float sum -1 11 1 1 0': size 2048 does not exceed the "
            "previous row's 4096: sizes must ascend within a run (concatenated runs each start "
            "with their '# nThread' line)");
  EXPECT_EQ(error_of([&] {
              import_nccl_tests("===begin all_reduce_perf===\n" + std::string(kAllReduce8), "t.txt",
                                o);
            }),
            "t.txt: line 1: '===begin all_reduce_perf===': a data row before the column header "
            "('#  size  count  type ... time  algbw  busbw ...'), so its time column is unknown; "
            "keep nccl-tests' comment lines");
  EXPECT_EQ(error_of([&] {
              import_nccl_tests(short_output("all_reduce_perf", "") +
                                    "#  Rank x Group 0 Pid 7 on box device 0 [0x1] GPU\n" +
                                    kTwoRows,
                                "t.txt", o);
            }),
            "t.txt: line 8: '#  Rank x Group 0 Pid 7 on box device 0 [0x1] GPU': expected a rank "
            "line '#  Rank N [Group G] Pid P on HOST device D [BUS] NAME'");
}

TEST(NcclTestsImport, RefusesCollectivesLinksJsonCannotHold) {
  for (const char* binary : {"reduce_perf", "gather_perf", "scatter_perf", "hypercube_perf"}) {
    EXPECT_EQ(error_of([&] {
                import_nccl_tests(short_output(binary, kTwoRows), "r.txt", on_fabric("pcie"));
              }),
              std::string("r.txt: line 1: links.json holds no curve of ") + binary +
                  "; it holds all_reduce (all_reduce_perf), all_gather (all_gather_perf), "
                  "reduce_scatter (reduce_scatter_perf), all_to_all (alltoall_perf), broadcast "
                  "(broadcast_perf), send_recv (sendrecv_perf)");
  }
  NcclImportOptions o = on_fabric("pcie");
  o.collective = "reduce";
  EXPECT_NE(error_of([&] {
              import_nccl_tests(kAllGather16, "ag.txt", o);
            }).find("--collective = reduce: links.json holds no curve of reduce"),
            std::string::npos);
}

TEST(NcclTestsImport, SaysWhatItCannotTellAndWhichOptionTellsIt) {
  EXPECT_EQ(error_of([&] { import_nccl_tests(kAllReduce8, "ar.txt", {}); }),
            "ar.txt: the run at line 1 ran on one host, node1: pass --fabric with the intra_node "
            "fabric its GPUs share (nvswitch, pcie)");
  EXPECT_EQ(error_of([&] { import_nccl_tests(kAllGather16, "ag.txt", {}); }),
            "ag.txt: the run at line 1 does not name its binary (no '# Collective test "
            "starting:' line, as in older nccl-tests): pass --collective (one of all_reduce "
            "(all_reduce_perf), all_gather (all_gather_perf), reduce_scatter "
            "(reduce_scatter_perf), all_to_all (alltoall_perf), broadcast (broadcast_perf), "
            "send_recv (sendrecv_perf))");
  NcclImportOptions o = on_fabric("nvswitch");
  o.collective = "broadcast";
  EXPECT_EQ(error_of([&] { import_nccl_tests(kAllReduce8, "ar.txt", o); }),
            "ar.txt: the run at line 1 is all_reduce_perf, not broadcast");
  o.collective = "";
  o.ranks = 4;
  EXPECT_EQ(error_of([&] { import_nccl_tests(kAllReduce8, "ar.txt", o); }),
            "ar.txt: the run at line 1 lists 8 ranks, not 4");
  // Rows alone: the group size and the device come from the options.
  const std::string rows_only =
      "#  size count type redop root time algbw busbw #wrong\n" + std::string(kTwoRows);
  o = on_fabric("pcie");
  o.collective = "all_reduce";
  EXPECT_EQ(error_of([&] { import_nccl_tests(rows_only, "rows.txt", o); }),
            "rows.txt: the run at line 1 lists no '#  Rank N ...' lines: pass --ranks (the group "
            "size)");
  o.ranks = 4;
  EXPECT_EQ(error_of([&] { import_nccl_tests(rows_only, "rows.txt", o); }),
            "rows.txt: no rank line names a device: pass --device (a cluster spec's gpu.name)");
  o.device = "NVIDIA L40S";
  EXPECT_EQ(import_nccl_tests(rows_only, "rows.txt", o).curves.at(0).ranks, 4);
}

TEST(NcclTestsImport, RefusesRunsThatMakeNoCurve) {
  const NcclImportOptions o = on_fabric("nvswitch");
  EXPECT_EQ(error_of([&] { import_nccl_tests("", "e.txt", o); }),
            "e.txt: no nccl-tests output (no data rows)");
  EXPECT_EQ(error_of([&] {
              import_nccl_tests(short_output("all_reduce_perf", "1024 256 float sum -1 10 1 1 0\n"),
                                "one.txt", o);
            }),
            "one.txt: the run at line 1 has 1 data rows of size > 0: a curve needs at least two "
            "message sizes");
  EXPECT_EQ(error_of([&] {
              import_nccl_tests(short_output("all_reduce_perf",
                                             "1024 256 float sum -1 12 1 1 0\n"
                                             "4096 1024 float sum -1 10 1 1 0\n"),
                                "flat.txt", o);
            }),
            "flat.txt: the run at line 1: its times do not grow with the message size, so no "
            "bandwidth can be fitted (time = latency + bytes x factor / busbw)");
  const std::string one_rank =
      "# Collective test starting: all_reduce_perf\n"
      "#  Rank  0 Group  0 Pid 7 on box device  0 [0x1b] NVIDIA H100 80GB HBM3\n"
      "#  size count type redop root time algbw busbw #wrong\n" +
      std::string(kTwoRows);
  EXPECT_EQ(error_of([&] { import_nccl_tests(one_rank, "1.txt", o); }),
            "1.txt: the run at line 1 ran on 1 rank: a link curve needs a group of at least 2");
}

TEST(NcclTestsImport, SeveralDeviceNamesNeedTheDeviceOption) {
  std::string text = short_output("all_reduce_perf", kTwoRows);
  text.replace(text.rfind("NVIDIA H100 80GB HBM3"), 21, "NVIDIA H200");
  EXPECT_EQ(error_of([&] { import_nccl_tests(text, "mix.txt", on_fabric("nvswitch")); }),
            "mix.txt: the rank lines name several devices ('NVIDIA H100 80GB HBM3', 'NVIDIA "
            "H200'): pass --device with the one the curves are for");
}

// Any prefix of a valid output, and the output with any one line cut short, imports or fails
// with a ConfigError: never a crash (the sanitizer build runs this too).
TEST(NcclTestsImport, TruncatedOutputsFailCleanly) {
  const std::string text = std::string(kAllReduce8) + kAllGather16;
  NcclImportOptions o = on_fabric("nvswitch");
  o.collective = "all_reduce";
  o.device = "two GPU kinds";
  int imported = 0, refused = 0;
  for (std::size_t n = 0; n <= text.size(); n += 7) {
    try {
      import_nccl_tests(text.substr(0, n), "cut.txt", o);
      ++imported;
    } catch (const ConfigError&) {
      ++refused;
    }
  }
  for (std::size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n', at + 1)) {
    std::string cut = text;
    cut.erase(at > 20 ? at - 20 : 0, 20);
    try {
      import_nccl_tests(cut, "cut.txt", o);
      ++imported;
    } catch (const ConfigError&) {
      ++refused;
    }
  }
  EXPECT_GT(imported, 0);
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace strata::profiler
