// Training data for the executor: a text corpus read as bytes (a byte-level tokenizer: token =
// byte value, vocabulary 256), cut into fixed-length samples by a deterministic rule, so every
// strategy, every rank and the PyTorch reference see the same tokens.
//
// Sample g (counted from 0 over the whole run: step k's global batch is samples k B .. k B + B-1)
// starts at offset splitmix64(seed + g) mod (n - T), where n is the corpus length in bytes and T
// the sequence length; its tokens are bytes [o, o + T), its targets bytes [o + 1, o + T + 1).
// Under data parallelism replica d of D takes samples k B + d B/D .. k B + (d+1) B/D - 1 of step
// k, micro-batch j of those the consecutive mbs samples from j mbs (Megatron's split).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace strata::exec {

class Corpus {
 public:
  // Synthetic tokens for a vocabulary of any size (`strata run --data random`: throughput runs
  // of models with real vocabularies, GPT-2's 50,257): token j of sample g is
  // splitmix64(seed + g, j) mod vocab, uniform; its target is token j + 1 of the same stream.
  // As deterministic as the corpus: every strategy and rank sees the same tokens.
  static Corpus synthetic(std::int64_t vocab, int seq_length, std::uint64_t seed);

  // Reads `path` as bytes. ConfigError when it cannot be read or is shorter than T + 1 bytes.
  Corpus(const std::string& path, int seq_length, std::uint64_t seed);
  Corpus(std::vector<std::uint8_t> bytes, int seq_length, std::uint64_t seed);

  std::size_t size_bytes() const { return bytes_.size(); }
  int seq_length() const { return seq_length_; }
  const std::string& path() const { return path_; }

  // Offset of sample g (see the header comment).
  std::size_t offset(std::int64_t sample) const;
  // Tokens and targets of `count` consecutive samples from `first`, (count, T) each.
  void batch(std::int64_t first, int count, std::vector<std::int32_t>& tokens,
             std::vector<std::int32_t>& targets) const;

 private:
  void validate() const;

  Corpus() = default;
  std::string path_;
  std::vector<std::uint8_t> bytes_;
  std::int64_t vocab_ = 0;  // synthetic: the vocabulary (0 for a corpus)
  int seq_length_ = 0;
  std::uint64_t seed_ = 0;
};

// The bundled corpus (configs/data/tiny-corpus.txt) in this build's source tree, or under the
// environment's STRATA_CONFIG_DIR when set.
std::string default_corpus_path();

}  // namespace strata::exec
