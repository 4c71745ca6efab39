// default_runtime() and sync_wait (SPEC §1): the process-wide runtime is created on first use,
// with WEFT_WORKERS workers when that is set. It is created once per process, so these tests
// live in a binary of their own, and the first test here is the one that creates it (ctest runs
// each test in a process of its own; a plain run of the binary runs them in this order).
#include <weft/weft.hpp>

#include <gtest/gtest.h>
#include <pthread.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace {

using weft::Task;
using weft::UsageError;

Task<int> value_of(int v) { co_return v; }

std::string current_thread_name() {
  char name[32] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

TEST(DefaultRuntime, WeftWorkersIsReadOnFirstUse) {
  // A malformed value is refused, and the runtime is not created by the failed attempt.
  ASSERT_EQ(setenv("WEFT_WORKERS", "three", 1), 0);
  EXPECT_THROW(weft::default_runtime(), UsageError);
  ASSERT_EQ(setenv("WEFT_WORKERS", "0", 1), 0);
  EXPECT_THROW(weft::default_runtime(), UsageError);

  ASSERT_EQ(setenv("WEFT_WORKERS", "3", 1), 0);
  EXPECT_EQ(weft::default_runtime().workers(), 3u);

  // Created once: later changes to the environment do not matter.
  ASSERT_EQ(setenv("WEFT_WORKERS", "5", 1), 0);
  EXPECT_EQ(weft::default_runtime().workers(), 3u);
  EXPECT_EQ(&weft::default_runtime(), &weft::default_runtime());
}

TEST(DefaultRuntime, SyncWaitRunsTheTaskOnTheDefaultRuntime) {
  ASSERT_EQ(setenv("WEFT_WORKERS", "3", 1), 0);  // in case this test creates it
  EXPECT_EQ(weft::default_runtime().workers(), 3u);
  EXPECT_EQ(weft::sync_wait(value_of(21)), 21);
  EXPECT_EQ(weft::sync_wait([]() -> Task<std::string> { co_return current_thread_name(); }())
                .rfind("weft-w", 0),
            0u);
  EXPECT_THROW(weft::sync_wait([]() -> Task<void> {
    throw std::out_of_range("x");
    co_return;
  }()),
               std::out_of_range);
}

TEST(DefaultRuntime, SyncWaitOnADefaultRuntimeWorkerThrowsUsageError) {
  ASSERT_EQ(setenv("WEFT_WORKERS", "3", 1), 0);
  const bool threw = weft::sync_wait([]() -> Task<bool> {
    try {
      weft::sync_wait(value_of(1));
    } catch (const UsageError&) {
      co_return true;
    }
    co_return false;
  }());
  EXPECT_TRUE(threw);
}

}  // namespace
