// `strata profile links`: write links.json (docs/profiles.md "Measuring and importing links"),
// imported from nccl-tests output (profiler/nccl_tests.hpp) or measured under mpirun through the
// executor's communication layer (profiler/tools/link_bench.hpp): MPI on host buffers, or NCCL
// on device buffers with its unique id over MPI (--backend nccl). Only rank 0 writes.
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/launch.hpp"
#include "cli/specs.hpp"
#include "common/error.hpp"
#include "common/units.hpp"
#include "executor/comm.hpp"
#include "kernels/backend.hpp"
#include "profiler/nccl_tests.hpp"
#include "profiler/tools/link_bench.hpp"

namespace strata::cli {

const char* const kProfileLinksHelp =
    R"(Usage: strata profile links --import FILE [--fabric F] [--device NAME] --out links.json
       mpirun -np N strata profile links --out links.json [--backend mpi|nccl] [--cluster C]
                                         [--max-bytes B] [--iters K]

Write links.json: the time of collectives over message sizes, one curve per collective and group
size, each with its latency/bandwidth fit (docs/profiles.md), for the simulator's link costs.

Import nccl-tests output (no MPI needed):
  --import FILE        the standard output of all_reduce_perf, all_gather_perf,
                       reduce_scatter_perf, alltoall_perf, broadcast_perf or sendrecv_perf, older
                       or newer layout; runs may be concatenated, each becomes a curve. The
                       out-of-place time of each size is read; the group size, the hosts and the
                       GPU name come from the "#  Rank ..." lines
  --fabric F           what the groups span: an intra_node fabric of a cluster spec (nvswitch,
                       pcie) or network (default: network when the rank lines name several
                       hosts; required for a run on one host)
  --device NAME        the device the curves are for, a cluster spec's gpu.name (default: the
                       GPU name of the rank lines)
  --collective C       for older outputs that do not name their binary: all_reduce, all_gather,
                       reduce_scatter, all_to_all, broadcast or send_recv
  --ranks N            the group size, for outputs without rank lines

Measure under mpirun (N >= 2 ranks; needs a build with MPI):
  --backend B          mpi (default): the executor's MPI layer on host buffers; nccl: its NCCL
                       layer on device buffers, rank r on CUDA device r mod the devices of its
                       host, the NCCL unique id broadcast over MPI (needs a CUDA build with NCCL,
                       libnccl.so.2 and a GPU per rank; links.json's backend is then "nccl").
                       One rank has no link to measure, so one GPU cannot run it
  --cluster C          the cluster spec the ranks run on (file or bundled name; default
                       local-cpu): the device is its gpu.name and gpu.kind, a group on one host
                       spans its intra_node fabric, a group on several hosts the network
  --max-bytes B        the largest message: bytes, or with a K, M or G suffix (x 1024); sizes run
                       from 8 bytes by --factor, then B itself (default 16M)
  --factor F           each size F times the one before (default 2, as nccl-tests' -f 2; 4 halves
                       the sizes and the time, but may step over where a transport slows down)
  --iters K            timed calls per size (default 20)
  --warmup W           untimed calls per size before them (default 5)

Both:
  --out FILE           links.json to write ('-' for stdout), whole and only on success;
                       checked before any work (not --import's file, its directory writable)
  --help               show this help

Measured: every collective kind of links.json -- all_reduce, all_gather, reduce_scatter,
all_to_all and broadcast (from the group's first rank) over the first 2, 4, 8, ... ranks and over
all N, and send_recv between ranks 0 and 1 (both directions at once) -- through the executor's
MPI or NCCL layer. A size's time is the slowest rank's mean over the timed calls; one more call on
rank-dependent inputs is then checked exactly, and a wrong result on any rank stops the run. A
curve whose times do not grow with the message size (noise over small messages) is left out
with a warning. Progress and warnings go to stderr.

Examples (CI runs as root: add --allow-run-as-root; more ranks than cores: --oversubscribe):
  all_reduce_perf -b 8 -e 1G -f 2 -g 8 > ar.txt
  strata profile links --import ar.txt --fabric nvswitch --out links.json
  mpirun -np 4 strata profile links --max-bytes 64M --out links.json

Exit codes: 0 success, 1 invalid input, 2 usage error, 3 does not fit in memory, 4 runtime
failure, 70 internal error (the table: strata --help, cli/README.md).
)";

namespace {

// How long the NCCL ranks may take to join the world and each group.
constexpr double kNcclInitTimeoutS = 300;

// The flags of each mode, refused in the other.
const std::vector<std::string> kImportFlags = {"--fabric", "--device", "--collective", "--ranks"};
const std::vector<std::string> kMeasureFlags = {"--backend", "--cluster", "--max-bytes",
                                                "--factor",  "--iters",   "--warmup"};

// `text` as bytes: a whole number with an optional K, M or G suffix (x 1024, as nccl-tests' -e).
std::int64_t parse_bytes(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  int shift = 0;  // the suffix's power of 2
  if (used > 0 && used + 1 == text.size()) {
    const char suffix = text.back();
    shift = suffix == 'K' ? 10 : suffix == 'M' ? 20 : suffix == 'G' ? 30 : 0;
    if (shift > 0) ++used;
  }
  const std::int64_t scale = std::int64_t{1} << shift;
  if (used == 0 || used != text.size() || n < 1 || n > (std::int64_t{1} << 40) / scale) {
    throw ConfigError(flag + " = " + text +
                      ": must be a positive number of bytes (e.g. 4096, 64K, 16M, 1G)");
  }
  return n * scale;
}

// A flag's value as an integer >= 0, or `fallback` when absent.
int non_negative_int(const Args& args, const std::string& flag, int fallback) {
  const auto v = args.get(flag);
  if (!v) return fallback;
  const std::optional<long long> n = whole_integer(*v);
  if (!n || *n < 0 || *n > INT_MAX) {  // beyond INT_MAX: out of std::stoi's range, as before
    throw ConfigError(flag + " = " + *v + ": must be a whole number >= 0");
  }
  return static_cast<int>(*n);
}

// Refuses the flags of the other mode: "--fabric: only with --import (...)".
void refuse(const Args& args, const std::vector<std::string>& flags, const std::string& why) {
  for (const std::string& f : flags) {
    if (args.has(f)) throw ConfigError(f + ": " + why);
  }
}

// A table of the curves, for people.
std::string summary(const profiler::LinkProfile& p, const std::string& path) {
  std::ostringstream out;
  out << path << ": " << p.curves.size() << " curves (" << p.backend << ") on '" << p.on.device
      << "'\n";
  char line[160];
  std::snprintf(line, sizeof line, "  %-15s %5s  %-10s %5s  %-22s %11s %12s\n", "collective",
                "ranks", "fabric", "sizes", "bytes", "latency", "busbw");
  out << line;
  for (const profiler::LinkCurve& c : p.curves) {
    const std::string range = units::format_bytes(c.points.front().bytes) + " .. " +
                              units::format_bytes(c.points.back().bytes);
    std::snprintf(line, sizeof line, "  %-15s %5d  %-10s %5zu  %-22s %8s us %7s GB/s\n",
                  profiler::link_collective_name(c.collective), c.ranks, c.fabric.c_str(),
                  c.points.size(), range.c_str(), units::fixed(c.fit.latency_s * 1e6, 2).c_str(),
                  units::fixed(c.fit.busbw_Bps / 1e9, 3).c_str());
    out << line;
  }
  return out.str();
}

// Writes the profile (whole, after every check) and, unless it went to stdout, its summary.
int write_profile(const profiler::LinkProfile& p, const std::string& path) {
  write_outputs({{"--out", path, profiler::link_profile_to_json(p).dump(2) + "\n"}});
  if (path != "-") std::cout << summary(p, path);
  return kExitOk;
}

int import_links(const Args& args) {
  refuse(args, kMeasureFlags, "only when measuring under mpirun, not with --import");
  profiler::NcclImportOptions opts;
  opts.fabric = args.get("--fabric").value_or("");
  opts.device = args.get("--device").value_or("");
  opts.collective = args.get("--collective").value_or("");
  opts.ranks = args.get_positive_int("--ranks").value_or(0);
  const std::string file = args.require("--import");
  return write_profile(profiler::import_nccl_tests(json::read_file(file), file, opts),
                       args.require("--out"));
}

// The benchmark's options from the flags and the cluster spec (checked before MPI starts).
profiler::LinkBenchOptions bench_options(const Args& args) {
  const strategies::ClusterSpec cluster = strategies::load_cluster(
      resolve_spec("clusters", "--cluster", args.get("--cluster").value_or("local-cpu")));
  const strategies::NodeGroup& node = cluster.group_of_gpu(0);
  profiler::LinkBenchOptions opts;
  if (const auto b = args.get("--max-bytes")) opts.max_bytes = parse_bytes("--max-bytes", *b);
  opts.iters = args.get_positive_int("--iters").value_or(opts.iters);
  opts.size_factor = args.get_positive_int("--factor").value_or(opts.size_factor);
  opts.warmup = non_negative_int(args, "--warmup", opts.warmup);
  opts.device = node.gpu.name;
  opts.device_kind = node.gpu.kind == strategies::DeviceKind::kCpu ? "cpu" : "gpu";
  opts.intra_fabric = strategies::intra_fabric_name(node.intra_node.kind);
  opts.progress = [](const std::string& s) { std::cerr << "links: " << s << std::endl; };
  opts.warning = [](const std::string& s) { std::cerr << "links: warning: " << s << std::endl; };
  return opts;
}

int measure(const Args& args) {
  refuse(args, kImportFlags,
         "only with --import (measuring takes the fabric and the device from --cluster)");
  const std::string out = args.require("--out");
  (void)bench_options(args);  // its errors before MPI starts
  const std::string backend = args.get("--backend").value_or("mpi");
  if (backend != "mpi" && backend != "nccl") {
    throw ConfigError("--backend = " + backend + ": must be mpi or nccl");
  }
  const bool nccl_backend = backend == "nccl";
  if (nccl_backend) {
    if (const std::string why = exec::nccl_unavailable_reason(); !why.empty()) {
      throw ConfigError("--backend nccl: " + why);
    }
    if (kernels::cuda_device_count() == 0) {
      throw ConfigError("--backend nccl: no CUDA device: " + kernels::cuda_unavailable_reason());
    }
  }
  if (!exec::built_with_mpi()) {
    throw ConfigError(
        "measuring links needs an MPI build and mpirun: this strata was built "
        "without MPI (STRATA_WITH_MPI=OFF or no MPI found); rebuild with MPI and "
        "run `mpirun -np N strata profile links --out links.json`, or import "
        "nccl-tests output with --import");
  }
  if (!under_mpi_launcher()) {  // started directly: one rank, nothing to measure
    throw ConfigError(
        "measuring links needs at least 2 ranks: run it under mpirun, e.g. "
        "`mpirun -np 2 strata profile links --out " +
        out + "`");
  }

  auto mpi = exec::make_mpi_comm();
  std::unique_ptr<kernels::Stream> stream;  // the NCCL backend's, its buffers' too
  std::unique_ptr<exec::Comm> nccl;
  if (nccl_backend) {
    try {
      const int device = mpi->rank() % kernels::cuda_device_count();
      stream = std::make_unique<kernels::Stream>(kernels::Stream::cuda(device));
      exec::NcclOptions nccl_options;
      nccl_options.device = device;
      nccl_options.stream = stream.get();
      nccl_options.init_timeout_s = kNcclInitTimeoutS;
      nccl = exec::make_nccl_comm(*mpi, nccl_options);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "strata profile links: rank %d: error: %s\n", mpi->rank(), e.what());
      std::fflush(stderr);
      mpi->abort(kExitRuntime);
    }
  }
  profiler::LinkBenchOptions opts = bench_options(args);
  opts.stream = stream.get();
  exec::Comm* comm = nccl ? nccl.get() : mpi.get();
  const bool lead = comm->rank() == 0;
  profiler::LinkProfile profile;
  try {
    profile = profiler::measure_links(*comm, opts);
  } catch (const ConfigError&) {
    if (lead) throw;  // every rank checked the same options; one says so
    return kExitConfigError;
  } catch (const profiler::LinkBenchError& e) {
    if (lead) std::cerr << "strata profile links: error: " << e.what() << "\n";
    return kExitRuntime;  // every rank saw the same failure of the measurement
  } catch (const std::exception& e) {
    // A failure of this rank alone: stop the world, so that no rank waits on it forever.
    std::fprintf(stderr, "strata profile links: rank %d: error: %s\n", comm->rank(), e.what());
    std::fflush(stderr);
    comm->abort(70);
  }
  return lead ? write_profile(profile, out) : kExitOk;
}

}  // namespace

int profile_links_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kProfileLinksHelp;
    return kExitOk;
  }
  // Arguments are checked before MPI starts, so a usage error is one message, not N.
  const Args args(argv,
                  {"--import", "--fabric", "--device", "--collective", "--ranks", "--backend",
                   "--cluster", "--max-bytes", "--factor", "--iters", "--warmup", "--out"},
                  {}, {});
  std::vector<NamedPath> inputs = spec_inputs(args);
  for (const NamedPath& p : flag_paths(args, {"--import"})) inputs.push_back(p);
  check_paths(inputs, {{"--out", args.require("--out")}});
  return args.has("--import") ? import_links(args) : measure(args);
}

}  // namespace strata::cli
