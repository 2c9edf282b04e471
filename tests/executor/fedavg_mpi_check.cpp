// Run by fedavg_test.cpp, in one of two modes, on gpt-tiny under a tiny-* strategy (one site's
// Plan, R ranks):
//   fedavg_mpi_check run STRATEGY SITES ROUNDS SCHEDULE FLAGS OUT   (mpirun -np SITES x R)
//   fedavg_mpi_check reference STRATEGY SITES ROUNDS SCHEDULE FLAGS OUT   (R ranks; 1: no mpirun)
// `run` trains the sites as groups of ranks (FedAvgRank), `reference` the sites one after another
// in this process (fedavg_reference). SCHEDULE gives each round's participants ("0,1/0/0,1":
// three rounds, site 1 out of the second), FLAGS is "plain", "secure", "dp" or "secure+dp"
// (local_steps 2 always). Each rank writes OUT/site-S-rank-P.txt (the reference as site 0):
// per round its participants and every site's losses, then the rank's final parameters, all
// printed to round-trip exactly.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "executor/comm.hpp"
#include "executor/fedavg.hpp"
#include "strategies/plan.hpp"

namespace {

using namespace strata;

std::vector<std::vector<int>> parse_schedule(const std::string& text) {
  std::vector<std::vector<int>> rounds;
  std::stringstream rs(text);
  for (std::string round; std::getline(rs, round, '/');) {
    rounds.emplace_back();
    std::stringstream ss(round);
    for (std::string site; std::getline(ss, site, ',');) rounds.back().push_back(std::stoi(site));
  }
  return rounds;
}

void write(const std::string& path, const std::vector<exec::FedAvgRound>& rounds,
           const std::vector<float>& params) {
  std::ofstream out(path);
  char buf[64];
  for (const exec::FedAvgRound& r : rounds) {
    out << "round " << r.round << " participants";
    for (int s : r.participants) out << " " << s;
    out << " bytes " << r.update_bytes_per_site << "\n";
    for (std::size_t s = 0; s < r.losses.size(); ++s) {
      out << "losses " << s;
      for (double l : r.losses[s]) {
        std::snprintf(buf, sizeof buf, " %.17g", l);
        out << buf;
      }
      out << "\n";
    }
    for (const exec::DpReport& d : r.dp) {
      std::snprintf(buf, sizeof buf, "dp %.17g %.17g\n", d.norm_before, d.norm_after_clip);
      out << buf;
    }
  }
  out << "params " << params.size() << "\n";
  for (float p : params) {
    std::snprintf(buf, sizeof buf, "%.9g\n", static_cast<double>(p));
    out << buf;
  }
}

int run(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr,
                 "usage: fedavg_mpi_check run|reference STRATEGY SITES ROUNDS SCHEDULE "
                 "FLAGS OUT\n");
    return 2;
  }
  const std::string mode = argv[1], configs = std::string(STRATA_SOURCE_DIR) + "/configs/";
  const auto s = strategies::load_strategy(configs + "strategies/" + argv[2] + ".json");
  const auto plan = strategies::lower(strategies::load_model(configs + "models/gpt-tiny.json"),
                                      strategies::load_cluster(configs + "clusters/local-cpu.json"),
                                      s, s.world_size());
  exec::FedAvgOptions o;
  o.sites = std::atoi(argv[3]);
  o.local_steps = 2;
  const std::string flags = argv[6];
  o.secure_aggregation = flags.find("secure") != std::string::npos;
  if (flags.find("dp") != std::string::npos) {
    o.dp_sigma = 0.001;  // small: the losses stay informative
    o.dp_clip = 0.05;    // below a 2-step update's norm, so the clip acts
  }
  std::vector<std::vector<int>> schedule = parse_schedule(argv[5]);
  schedule.resize(static_cast<std::size_t>(std::atoi(argv[4])), schedule.back());
  const std::string out = argv[7];
  exec::RunOptions options;
  const int T = plan.model.seq_length;
  std::vector<exec::Corpus> corpora;
  for (int site = 0; site < o.sites; ++site) {
    corpora.emplace_back(exec::default_corpus_path(), T, exec::site_data_seed(options.seed, site));
  }
  const bool mpi = exec::built_with_mpi() && std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  auto world = mpi ? exec::make_mpi_comm() : exec::make_local_comm();
  std::vector<exec::FedAvgRound> rounds;
  std::vector<float> params;
  int site = 0, position = world->rank();
  if (mode == "reference") {
    std::vector<const exec::Corpus*> ptrs;
    for (const exec::Corpus& c : corpora) ptrs.push_back(&c);
    rounds = exec::fedavg_reference(plan, *world, ptrs, options, o, schedule, &params);
  } else {
    exec::FedAvgRank fed(*world, o);
    site = fed.site();
    position = fed.site_comm().rank();
    exec::Executor e(plan, fed.site_comm(), corpora[static_cast<std::size_t>(site)], options);
    for (std::size_t i = 0; i < schedule.size(); ++i) {
      rounds.push_back(fed.run_round(e, static_cast<int>(i) + 1, schedule[i]));
    }
    params = exec::flat_parameters(e);
  }
  write(out + "/site-" + std::to_string(site) + "-rank-" + std::to_string(position) + ".txt",
        rounds, params);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fedavg_mpi_check: error: %s\n", e.what());
    return 1;
  }
}
