// Bookkeeping shared by the chaos, perturbation and fuzz tests (no GoogleTest here: the fuzzer
// includes it too): counting tasks in and out, and collecting the real failures of a group's
// children.
#pragma once

#include <weft/weft.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <utility>
#include <vector>

namespace weft_test {

// How many tasks started and how many ended.
struct TaskCounts {
  std::atomic<std::uint64_t> started{0};
  std::atomic<std::uint64_t> ended{0};
  bool balanced() const { return started.load() == ended.load(); }
};

// In every task frame: counts the task's start and its end.
class Life {
 public:
  explicit Life(TaskCounts& counts) : counts_(counts) { counts_.started.fetch_add(1); }
  ~Life() { counts_.ended.fetch_add(1); }
  Life(const Life&) = delete;
  Life& operator=(const Life&) = delete;

 private:
  TaskCounts& counts_;
};

// What a group's children report: every real failure (not Cancelled) that ends a child.
struct Failures {
  std::mutex mutex;
  std::vector<std::exception_ptr> seen;  // guarded by mutex
};

// Runs `child`, recording its real failure (then rethrowing it).
template <class T>
weft::Task<void> reported(weft::Task<T> child, Failures& failures) {
  try {
    (void)co_await std::move(child);
  } catch (const weft::Cancelled&) {
    throw;
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(failures.mutex);
      failures.seen.push_back(std::current_exception());
    }
    throw;
  }
}

}  // namespace weft_test
