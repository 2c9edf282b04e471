// The NCCL backend's bootstrap store (executor/file_store.hpp): values round-trip, a missing key
// times out naming the path and the timeout, concurrent readers all see the one value a late
// writer sets, and files that are not store values are errors naming what is wrong.
#include "executor/file_store.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "executor/comm.hpp"

namespace strata::exec {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("strata-store-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write_raw(const std::string& key, const std::string& contents) {
    std::ofstream(dir_ / key, std::ios::binary) << contents;
  }
  std::string message_of_get(const FileStore& store, const std::string& key) {
    try {
      store.get(key);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "(no error)";
  }
  fs::path dir_;
};

TEST_F(FileStoreTest, ValuesRoundTripWithAnyBytes) {
  const FileStore store(dir_.string(), 1.0);
  std::string id(128, '\0');
  for (int i = 0; i < 128; ++i) id[i] = static_cast<char>(i * 37);  // includes '\n' and '\0'
  store.set("nccl-world", id);
  EXPECT_EQ(store.get("nccl-world"), id);
  store.set("empty", "");
  EXPECT_EQ(store.get("empty"), "");
  store.set("nccl-world", "replaced");
  EXPECT_EQ(store.get("nccl-world"), "replaced");
  // Only the keys' files remain: the temporary files were renamed away.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"empty", "nccl-world"}));
}

TEST_F(FileStoreTest, AMissingKeyTimesOutNamingThePathAndTheTimeout) {
  const FileStore store(dir_.string(), 0.05);
  const auto start = std::chrono::steady_clock::now();
  try {
    store.get("nccl-world");
    FAIL() << "get of a key nobody set returned";
  } catch (const CommTimeout& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find((dir_ / "nccl-world").string()), std::string::npos) << what;
    EXPECT_NE(what.find("within 0.05 s"), std::string::npos) << what;
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
}

TEST_F(FileStoreTest, ConcurrentReadersAllSeeALateWritersValue) {
  const FileStore store(dir_.string(), 10.0);
  const std::string value(4096, 'x');  // larger than one write, so a torn read would show
  std::vector<std::string> got(8);
  std::vector<std::thread> readers;
  for (std::size_t i = 0; i < got.size(); ++i) {
    readers.emplace_back([&, i] { got[i] = store.get("id"); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  store.set("id", value);
  for (auto& t : readers) t.join();
  for (const std::string& g : got) EXPECT_EQ(g, value);
}

TEST_F(FileStoreTest, FilesThatAreNotStoreValuesAreErrorsNamingThePath) {
  const FileStore store(dir_.string(), 1.0);
  const std::string path = (dir_ / "k").string();
  write_raw("k", "hello");
  std::string what = message_of_get(store, "k");
  EXPECT_NE(what.find(path + " is not a store value"), std::string::npos) << what;
  write_raw("k", "strata-store 1 12\nshort");
  what = message_of_get(store, "k");
  EXPECT_NE(what.find(path + " is truncated or overlong: its header says 12 bytes, it holds 5"),
            std::string::npos)
      << what;
  write_raw("k", "strata-store 1 x2\nab");
  what = message_of_get(store, "k");
  EXPECT_NE(what.find("malformed header (size \"x2\""), std::string::npos) << what;
  write_raw("k", "");
  what = message_of_get(store, "k");
  EXPECT_NE(what.find("is not a store value"), std::string::npos) << what;
}

TEST_F(FileStoreTest, RejectsBadKeysDirectoriesAndTimeouts) {
  const FileStore store(dir_.string(), 1.0);
  for (const std::string key : {"", ".hidden", "a/b", "../up", "sp ace"}) {
    EXPECT_THROW(store.set(key, "v"), std::invalid_argument) << key;
  }
  try {
    FileStore((dir_ / "absent").string(), 1.0);
    FAIL() << "a missing directory was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "absent").string() + " does not exist"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(FileStore(dir_.string(), -1.0), std::invalid_argument);
}

}  // namespace
}  // namespace strata::exec
