// The byte-level corpus and its deterministic sampling; see data.hpp.
#include "executor/data.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "common/error.hpp"
#include "common/hash.hpp"

namespace strata::exec {

Corpus::Corpus(std::vector<std::uint8_t> bytes, int seq_length, std::uint64_t seed)
    : path_("(in memory)"), bytes_(std::move(bytes)), seq_length_(seq_length), seed_(seed) {
  validate();
}

void Corpus::validate() const {
  if (seq_length_ < 1) {
    throw ConfigError("model.seq_length = " + std::to_string(seq_length_) + ": must be positive");
  }
  if (bytes_.size() < static_cast<std::size_t>(seq_length_) + 1) {
    throw ConfigError("corpus '" + path_ + "' has " + std::to_string(bytes_.size()) +
                      " bytes: needs at least seq_length + 1 = " +
                      std::to_string(seq_length_ + 1));
  }
}

Corpus::Corpus(const std::string& path, int seq_length, std::uint64_t seed)
    : path_(path), seq_length_(seq_length), seed_(seed) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("--data = " + path + ": cannot open the corpus file");
  bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  validate();
}

Corpus Corpus::synthetic(std::int64_t vocab, int seq_length, std::uint64_t seed) {
  if (vocab < 1 || vocab > (std::int64_t{1} << 31) - 1) {
    throw ConfigError("model.vocab_size = " + std::to_string(vocab) +
                      ": synthetic tokens need a vocabulary of 1 to 2^31 - 1");
  }
  if (seq_length < 1) {
    throw ConfigError("model.seq_length = " + std::to_string(seq_length) + ": must be positive");
  }
  Corpus c;
  c.path_ = "random";
  c.vocab_ = vocab;
  c.seq_length_ = seq_length;
  c.seed_ = seed;
  return c;
}

std::size_t Corpus::offset(std::int64_t sample) const {
  if (vocab_ > 0) return 0;  // synthetic: every sample is its own stream
  const std::uint64_t span = bytes_.size() - static_cast<std::size_t>(seq_length_);
  return static_cast<std::size_t>(splitmix64(seed_ + static_cast<std::uint64_t>(sample)) % span);
}

void Corpus::batch(std::int64_t first, int count, std::vector<std::int32_t>& tokens,
                   std::vector<std::int32_t>& targets) const {
  const auto T = static_cast<std::size_t>(seq_length_);
  tokens.resize(static_cast<std::size_t>(count) * T);
  if (vocab_ > 0) {
    targets.resize(tokens.size());
    const auto vocab = static_cast<std::uint64_t>(vocab_);
    for (int i = 0; i < count; ++i) {
      const std::uint64_t stream = splitmix64(seed_ + static_cast<std::uint64_t>(first + i));
      auto token = [&](std::size_t j) {
        return static_cast<std::int32_t>(splitmix64(stream + j) % vocab);
      };
      for (std::size_t j = 0; j < T; ++j) {
        tokens[i * T + j] = token(j);
        targets[i * T + j] = token(j + 1);
      }
    }
    return;
  }
  targets.resize(tokens.size());
  for (int i = 0; i < count; ++i) {
    const std::size_t o = offset(first + i);
    for (std::size_t j = 0; j < T; ++j) {
      tokens[i * T + j] = bytes_[o + j];
      targets[i * T + j] = bytes_[o + j + 1];
    }
  }
}

std::string default_corpus_path() {
  // STRATA_CONFIG_DIR overrides the build's configs/ as it does for the CLI's bundled specs
  // (a copied build on another machine: scripts/gpu-check.sh).
  const char* env = std::getenv("STRATA_CONFIG_DIR");
  return std::string(env != nullptr && *env != '\0' ? env : STRATA_CONFIG_DIR) +
         "/data/tiny-corpus.txt";
}

}  // namespace strata::exec
