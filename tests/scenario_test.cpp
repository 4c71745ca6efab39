// The asyncio stories weft imitates (../shared/seeds/), told as weft code: initialisation where
// every worker must start, data fetching that needs all pieces, cleanup fan-out that keeps every
// outcome, the bucket uploads whose failure must stop the others, batch processing with except*,
// and cleanup that survives a cancellation.
//
// Time does not pass in these stories: a "slow" step waits for an Event that the story sets (or
// never sets) at the moment the asyncio version's sleep would have ended. No timing assertions.
#include <weft/event.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <ios>
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace {

using weft_test::spin_until;

using weft::Cancelled;
using weft::Event;
using weft::ExceptionGroup;
using weft::Future;
using weft::JoinHandle;
using weft::Outcome;
using weft::return_exceptions;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;
using weft::task_group;
using weft::TaskGroup;
namespace this_task = weft::this_task;

// What the stories print, in order.
class Log {
 public:
  void add(std::string line) {
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.push_back(std::move(line));
  }
  std::vector<std::string> lines() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }
  int count(const std::string& prefix) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int>(std::count_if(lines_.begin(), lines_.end(), [&](const std::string& l) {
      return l.rfind(prefix, 0) == 0;
    }));
  }
  bool has(const std::string& line) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::find(lines_.begin(), lines_.end(), line) != lines_.end();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

// Counts how many of a kind of step have begun; `all_begun` is set when `expected` have.
struct Progress {
  explicit Progress(int expected) : expected(expected) {}
  const int expected;
  std::atomic<int> begun{0};
  std::atomic<int> ended{0};
  Event all_begun;
  void begin() {
    if (begun.fetch_add(1, std::memory_order_acq_rel) + 1 == expected) all_begun.set();
  }
};

struct Ended {
  Progress& p;
  ~Ended() { p.ended.fetch_add(1, std::memory_order_acq_rel); }
};

// ----------------------------------------------------------------------------------------------
// Initialisation: all workers must start.
//
//   await safe_gather(*[worker.pre_run() for worker in workers])

struct StartupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ("w" + std::to_string(i) draws a false -Wrestrict from g++-12 at -O3.)
std::string worker_name(int i) {
  std::string name = "w";
  name += std::to_string(i);
  return name;
}

struct Worker {
  std::string name;
  bool fails = false;
  Event* dependency = nullptr;  // a slow start: waits for this first
  std::atomic<bool> ready{false};

  Task<void> pre_run(Log& log, Progress& progress) {
    progress.begin();
    Ended end{progress};
    log.add("pre_run " + name);
    if (dependency != nullptr) co_await dependency->wait();
    if (fails) throw StartupError(name + ": cannot bind its port");
    ready.store(true);
    log.add("ready " + name);
  }
};

TEST(Scenario, InitialisationStartsEveryWorker) {
  Runtime rt({.workers = 4});
  Log log;
  Event database_up;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < 8; ++i) {
    workers.push_back(std::make_unique<Worker>());
    workers.back()->name = worker_name(i);
    if (i % 2 == 0) workers.back()->dependency = &database_up;
  }
  Progress progress(8);
  rt.block_on([](std::vector<std::unique_ptr<Worker>>& workers, Log& log, Progress& progress,
                 Event& database_up) -> Task<void> {
    std::vector<Task<void>> pre_runs;
    for (auto& w : workers) pre_runs.push_back(w->pre_run(log, progress));
    // The database comes up once every worker has begun its start.
    auto [started, db] = co_await safe_gather(
        [](std::vector<Task<void>> pre_runs) -> Task<void> {
          co_await safe_gather(std::move(pre_runs));
        }(std::move(pre_runs)),
        [](Progress& progress, Event& database_up) -> Task<void> {
          co_await progress.all_begun.wait();
          database_up.set();
        }(progress, database_up));
    (void)started;
    (void)db;
  }(workers, log, progress, database_up));
  for (auto& w : workers) EXPECT_TRUE(w->ready.load()) << w->name;
  EXPECT_EQ(log.count("ready "), 8);
}

// One worker cannot start: the others (still waiting for their dependency) are cancelled and
// have ended by the time the error reaches the caller, as itself; none of them became ready.
TEST(Scenario, InitialisationWithAFailingWorkerCancelsTheRestAndReportsTheError) {
  Runtime rt({.workers = 4});
  Log log;
  Event database_up;  // never comes up in time
  Event may_fail;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < 6; ++i) {
    workers.push_back(std::make_unique<Worker>());
    workers.back()->name = worker_name(i);
    workers.back()->dependency = &database_up;
  }
  workers[3]->fails = true;
  workers[3]->dependency = &may_fail;
  Progress progress(6);
  std::string error;
  int ended_when_caught = -1;
  try {
    rt.block_on([](std::vector<std::unique_ptr<Worker>>& workers, Log& log, Progress& progress,
                   Event& may_fail) -> Task<void> {
      std::vector<Task<void>> pre_runs;
      for (auto& w : workers) pre_runs.push_back(w->pre_run(log, progress));
      co_await safe_gather(
          [](std::vector<Task<void>> pre_runs) -> Task<void> {
            co_await safe_gather(std::move(pre_runs));
          }(std::move(pre_runs)),
          [](Progress& progress, Event& may_fail) -> Task<void> {
            co_await progress.all_begun.wait();
            may_fail.set();
          }(progress, may_fail));
    }(workers, log, progress, may_fail));
  } catch (const StartupError& e) {
    error = e.what();
    ended_when_caught = progress.ended.load();
  }
  EXPECT_EQ(error, "w3: cannot bind its port");
  EXPECT_EQ(ended_when_caught, 6) << "the error arrived while workers were still starting";
  // The dependency arrives late: nobody is left waiting for it.
  database_up.set();
  for (auto& w : workers) EXPECT_FALSE(w->ready.load()) << w->name;
  EXPECT_EQ(log.count("ready "), 0);
  EXPECT_EQ(log.count("pre_run "), 6);
}

// The same start-up in a TaskGroup: the failure arrives in an ExceptionGroup, the other workers
// were cancelled.
TEST(Scenario, InitialisationInATaskGroupReportsTheFailedWorkerInAnExceptionGroup) {
  Runtime rt({.workers = 4});
  Log log;
  Event database_up;
  Event may_fail;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < 5; ++i) {
    workers.push_back(std::make_unique<Worker>());
    workers.back()->name = worker_name(i);
    workers.back()->dependency = &database_up;
  }
  workers[0]->fails = true;
  workers[0]->dependency = &may_fail;
  Progress progress(5);
  std::vector<std::string> errors;
  try {
    rt.block_on([](std::vector<std::unique_ptr<Worker>>& workers, Log& log, Progress& progress,
                   Event& may_fail) -> Task<void> {
      co_await task_group([&](TaskGroup& tg) -> Task<std::size_t> {
        for (auto& w : workers) auto h = tg.spawn(w->pre_run(log, progress));
        co_await progress.all_begun.wait();
        may_fail.set();
        co_return workers.size();
      });
    }(workers, log, progress, may_fail));
  } catch (const ExceptionGroup& eg) {
    for (const std::exception_ptr& e : eg.exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const StartupError& se) {
        errors.push_back(se.what());
      } catch (...) {
        errors.push_back("?");
      }
    }
  }
  EXPECT_EQ(errors, (std::vector<std::string>{"w0: cannot bind its port"}));
  EXPECT_EQ(progress.ended.load(), 5);
  database_up.set();
  EXPECT_EQ(log.count("ready "), 0);
}

// ----------------------------------------------------------------------------------------------
// Data fetching: need all pieces.
//
//   channel_info, front_row, participants = await safe_gather(
//       fetch_channel_info(channel_id), fetch_front_row(channel_id),
//       fetch_participants(channel_id))

struct ChannelInfo {
  int id = 0;
  std::string title;
};

struct FetchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Backend {
  Progress fetches{3};
  Event slow_answers;          // the slow fetches answer once this is set
  bool front_row_fails = false;
  std::atomic<int> answered{0};

  Task<ChannelInfo> fetch_channel_info(int id) {
    fetches.begin();
    Ended end{fetches};
    co_await slow_answers.wait();
    answered.fetch_add(1);
    co_return ChannelInfo{id, "channel " + std::to_string(id)};
  }
  Task<std::vector<std::string>> fetch_front_row(int id) {
    fetches.begin();
    Ended end{fetches};
    co_await fetches.all_begun.wait();
    if (front_row_fails) throw FetchError("front row of " + std::to_string(id) + " unavailable");
    answered.fetch_add(1);
    co_return std::vector<std::string>{"ada", "grace", "edsger"};
  }
  Task<std::size_t> fetch_participants(int id) {
    fetches.begin();
    Ended end{fetches};
    co_await slow_answers.wait();
    answered.fetch_add(1);
    co_return static_cast<std::size_t>(id) * 10;
  }
};

TEST(Scenario, DataFetchingReturnsEveryPieceInArgumentOrder) {
  Runtime rt({.workers = 4});
  Backend backend;
  struct Page {
    ChannelInfo info;
    std::vector<std::string> front_row;
    std::size_t participants = 0;
  };
  const Page page = rt.block_on([](Backend& backend) -> Task<Page> {
    // The slow answers come once every fetch is under way.
    auto opener = [](Backend& backend) -> Task<void> {
      co_await backend.fetches.all_begun.wait();
      backend.slow_answers.set();
    };
    auto fetch_all = [](Backend& backend) -> Task<std::tuple<ChannelInfo, std::vector<std::string>, std::size_t>> {
      co_return co_await safe_gather(backend.fetch_channel_info(7), backend.fetch_front_row(7),
                                     backend.fetch_participants(7));
    };
    auto [pieces, opened] = co_await safe_gather(fetch_all(backend), opener(backend));
    (void)opened;
    auto [channel_info, front_row, participants] = std::move(pieces);
    Page page;
    page.info = std::move(channel_info);
    page.front_row = std::move(front_row);
    page.participants = participants;
    co_return page;
  }(backend));
  EXPECT_EQ(page.info.id, 7);
  EXPECT_EQ(page.info.title, "channel 7");
  EXPECT_EQ(page.front_row, (std::vector<std::string>{"ada", "grace", "edsger"}));
  EXPECT_EQ(page.participants, 70u);
  EXPECT_EQ(backend.answered.load(), 3);
}

// A missing piece makes the page impossible: the error arrives as itself, and the other fetches
// were cancelled (they never answer, even once the backend would have).
TEST(Scenario, DataFetchingWithAMissingPieceFailsFastAndCancelsTheOtherFetches) {
  Runtime rt({.workers = 4});
  Backend backend;
  backend.front_row_fails = true;
  std::string error;
  int ended_when_caught = -1;
  try {
    rt.block_on([](Backend& backend) -> Task<void> {
      auto [info, front_row, participants] = co_await safe_gather(
          backend.fetch_channel_info(3), backend.fetch_front_row(3), backend.fetch_participants(3));
      (void)info;
      (void)front_row;
      (void)participants;
    }(backend));
  } catch (const FetchError& e) {
    error = e.what();
    ended_when_caught = backend.fetches.ended.load();
  }
  EXPECT_EQ(error, "front row of 3 unavailable");
  EXPECT_EQ(ended_when_caught, 3);
  backend.slow_answers.set();
  EXPECT_EQ(backend.answered.load(), 0);
}

// The TaskGroup form of the same fetch (seed: fetch_user_data): results are read from the join
// handles once the group has ended.
TEST(Scenario, DataFetchingInATaskGroupReadsEveryResultAfterTheGroup) {
  Runtime rt({.workers = 4});
  Backend backend;
  struct UserData {
    std::string user;
    std::vector<std::string> orders;
    std::size_t preferences = 0;
  };
  const UserData data = rt.block_on([](Backend& backend) -> Task<UserData> {
    std::optional<JoinHandle<ChannelInfo>> user;
    std::optional<JoinHandle<std::vector<std::string>>> orders;
    std::optional<JoinHandle<std::size_t>> preferences;
    co_await task_group([&](TaskGroup& tg) -> Task<int> {
      user.emplace(tg.spawn(backend.fetch_channel_info(1)));
      orders.emplace(tg.spawn(backend.fetch_front_row(1)));
      preferences.emplace(tg.spawn(backend.fetch_participants(1)));
      co_await backend.fetches.all_begun.wait();
      backend.slow_answers.set();
      co_return 3;
    });
    // All tasks guaranteed complete here.
    UserData data;
    data.user = user->result().title;
    data.orders = orders->result();
    data.preferences = preferences->result();
    co_return data;
  }(backend));
  EXPECT_EQ(data.user, "channel 1");
  EXPECT_EQ(data.orders.size(), 3u);
  EXPECT_EQ(data.preferences, 10u);
}

// ----------------------------------------------------------------------------------------------
// Cleanup fan-out: every shutdown runs to its end, every outcome comes back.
//
//   await safe_gather(service1.shutdown(), service2.shutdown(), service3.shutdown(),
//                     return_exceptions=True)

struct Service {
  std::string name;
  bool fails = false;
  Event* wait_for = nullptr;   // shuts down only after this (another service's flush)
  Event* flushed = nullptr;    // set once this one has flushed
  std::atomic<bool> closed{false};

  Task<void> shutdown(Log& log) {
    log.add("closing " + name);
    if (wait_for != nullptr) co_await wait_for->wait();
    if (fails) throw std::runtime_error(name + ": connection reset during shutdown");
    closed.store(true);
    if (flushed != nullptr) flushed->set();
    log.add("closed " + name);
  }
};

TEST(Scenario, CleanupFanOutReturnsEveryOutcomeEvenWhenSomeShutdownsFail) {
  Runtime rt({.workers = 4});
  Log log;
  Event cache_flushed;
  Event db_flushed;
  Service cache{.name = "cache", .fails = false, .wait_for = &db_flushed, .flushed = &cache_flushed};
  Service queue{.name = "queue", .fails = true, .wait_for = nullptr, .flushed = nullptr};
  Service db{.name = "db", .fails = false, .wait_for = nullptr, .flushed = &db_flushed};
  Service search{.name = "search", .fails = true, .wait_for = &cache_flushed, .flushed = nullptr};
  using Outcomes = std::tuple<Outcome<void>, Outcome<void>, Outcome<void>, Outcome<void>>;
  Outcomes outcomes = rt.block_on([](Service& cache, Service& queue, Service& db, Service& search,
                                     Log& log) -> Task<Outcomes> {
    co_return co_await safe_gather(return_exceptions, cache.shutdown(log), queue.shutdown(log),
                                   db.shutdown(log), search.shutdown(log));
  }(cache, queue, db, search, log));
  auto& [c, q, d, s] = outcomes;
  EXPECT_TRUE(c.has_value());
  EXPECT_TRUE(d.has_value());
  ASSERT_TRUE(q.has_exception());
  ASSERT_TRUE(s.has_exception());
  EXPECT_FALSE(q.is_cancelled());
  EXPECT_FALSE(s.is_cancelled());
  EXPECT_THROW(q.value(), std::runtime_error);
  try {
    std::rethrow_exception(s.exception());
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "search: connection reset during shutdown");
  }
  // The failures cancelled nothing: the slow shutdowns (waiting for other services) finished.
  EXPECT_TRUE(cache.closed.load());
  EXPECT_TRUE(db.closed.load());
  EXPECT_EQ(log.count("closing "), 4);
  EXPECT_EQ(log.count("closed "), 2);
}

// The same over a vector of running tasks (`*self._running_tasks`): successes are processed,
// failures logged.
TEST(Scenario, CleanupOfAVectorOfTasksLogsTheFailuresAndKeepsTheResults) {
  Runtime rt({.workers = 4});
  Log log;
  Event release;
  Progress progress(20);
  const std::vector<Outcome<int>> results = rt.block_on([](Event& release, Progress& progress) -> Task<std::vector<Outcome<int>>> {
    std::vector<Task<int>> running;
    for (int i = 0; i < 20; ++i) {
      running.push_back([](int i, Event& release, Progress& progress) -> Task<int> {
        progress.begin();
        Ended end{progress};
        if (i % 4 == 1) throw std::runtime_error("batch item " + std::to_string(i) + " failed");
        if (i % 4 == 2) co_await release.wait();  // slow items
        co_return i * i;
      }(i, release, progress));
    }
    running.push_back([](Progress& progress, Event& release) -> Task<int> {
      co_await progress.all_begun.wait();  // every item has begun (and some have failed)
      release.set();
      co_return -1;
    }(progress, release));
    co_return co_await safe_gather(return_exceptions, std::move(running));
  }(release, progress));
  ASSERT_EQ(results.size(), 21u);
  int processed = 0;
  for (int i = 0; i < 20; ++i) {
    if (results[i].has_exception()) {
      try {
        std::rethrow_exception(results[i].exception());
      } catch (const std::exception& e) {
        log.add(std::string("Task failed: ") + e.what());
      }
      EXPECT_EQ(i % 4, 1) << i;
    } else {
      EXPECT_EQ(results[i].value(), i * i) << i;
      ++processed;
    }
  }
  EXPECT_EQ(processed, 15);
  EXPECT_EQ(log.count("Task failed: "), 5);
  EXPECT_TRUE(log.has("Task failed: batch item 9 failed"));
  EXPECT_EQ(progress.ended.load(), 20);
}

// ----------------------------------------------------------------------------------------------
// The bucket uploads (seed: "asyncio.gather() — Running Coroutines Concurrently").
//
// Bucket-B fails while Bucket-A and Bucket-C are still uploading. With asyncio.gather, A and C
// keep running unmanaged in the background. A TaskGroup cancels them and waits for them, and
// they never finish afterwards.

struct Buckets {
  Log log;
  Progress long_uploads{2};  // A and C
  Event delay_a;
  Event delay_b;
  Event delay_c;

  Task<std::string> upload_bucket(std::string name, Event& delay, bool fail) {
    log.add("Starting upload to " + name);
    if (!fail) long_uploads.begin();
    co_await delay.wait();
    if (fail) throw std::ios_base::failure("Failed uploading to " + name);
    log.add("Finished upload to " + name);
    co_return "Success " + name;
  }
};

TEST(Scenario, TheFailingBucketUploadInATaskGroupCancelsTheOthersWhichNeverFinish) {
  Runtime rt({.workers = 4});
  Buckets b;
  struct Seen {
    std::vector<std::string> errors;
    bool a_cancelled = false;
    bool c_cancelled = false;
    bool b_failed = false;
  };
  const Seen seen = rt.block_on([](Buckets& b) -> Task<Seen> {
    Seen seen;
    std::optional<JoinHandle<std::string>> a;
    std::optional<JoinHandle<std::string>> bb;
    std::optional<JoinHandle<std::string>> c;
    try {
      co_await task_group([&](TaskGroup& tg) -> Task<int> {
        a.emplace(tg.spawn(b.upload_bucket("Bucket-A", b.delay_a, false)));
        bb.emplace(tg.spawn(b.upload_bucket("Bucket-B", b.delay_b, true)));
        c.emplace(tg.spawn(b.upload_bucket("Bucket-C", b.delay_c, false)));
        // Bucket-B's 0.5 s are up while A (1.5 s) and C (1.0 s) are still uploading.
        co_await b.long_uploads.all_begun.wait();
        b.delay_b.set();
        co_return 3;
      });
      b.log.add("all uploads done");
    } catch (const ExceptionGroup& eg) {
      for (const std::exception_ptr& e : eg.exceptions()) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          seen.errors.push_back(ex.what());
        } catch (...) {
          seen.errors.push_back("?");
        }
      }
      b.log.add("Caught exception");
    }
    seen.a_cancelled = a->outcome().is_cancelled();
    seen.c_cancelled = c->outcome().is_cancelled();
    seen.b_failed = bb->outcome().has_exception() && !bb->outcome().is_cancelled();
    co_return seen;
  }(b));
  ASSERT_EQ(seen.errors.size(), 1u);
  EXPECT_NE(seen.errors[0].find("Failed uploading to Bucket-B"), std::string::npos) << seen.errors[0];
  EXPECT_TRUE(seen.a_cancelled);
  EXPECT_TRUE(seen.c_cancelled);
  EXPECT_TRUE(seen.b_failed);
  // "Give outstanding tasks a moment to run": their delays end, more work goes through the
  // workers; nothing of A or C is left to finish.
  b.delay_a.set();
  b.delay_c.set();
  for (int i = 0; i < 10; ++i) {
    rt.block_on([]() -> Task<void> {
      for (int k = 0; k < 100; ++k) co_await this_task::yield();
    }());
  }
  EXPECT_EQ(b.log.count("Starting upload to "), 3);
  EXPECT_EQ(b.log.count("Finished upload to "), 0);
  EXPECT_FALSE(b.log.has("all uploads done"));
  const std::vector<std::string> lines = b.log.lines();
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "Caught exception");
}

// safe_gather fails fast as well: by the time the error reaches the caller (as itself), A and C
// were cancelled and have ended.
TEST(Scenario, TheFailingBucketUploadInASafeGatherArrivesAfterTheOthersWereCancelled) {
  Runtime rt({.workers = 4});
  Buckets b;
  std::string error;
  try {
    rt.block_on([](Buckets& b) -> Task<void> {
      auto releaser = [](Buckets& b) -> Task<std::string> {
        co_await b.long_uploads.all_begun.wait();
        b.delay_b.set();
        co_return "";
      };
      co_await safe_gather(b.upload_bucket("Bucket-A", b.delay_a, false),
                           b.upload_bucket("Bucket-B", b.delay_b, true),
                           b.upload_bucket("Bucket-C", b.delay_c, false), releaser(b));
    }(b));
  } catch (const std::ios_base::failure& e) {
    error = e.what();
    b.log.add("Caught exception");
  }
  EXPECT_NE(error.find("Failed uploading to Bucket-B"), std::string::npos) << error;
  b.delay_a.set();
  b.delay_c.set();
  rt.block_on([]() -> Task<void> {
    for (int k = 0; k < 100; ++k) co_await this_task::yield();
  }());
  EXPECT_EQ(b.log.count("Finished upload to "), 0);
  EXPECT_EQ(b.log.lines().back(), "Caught exception");
}

// The story's fix: return_exceptions lets every upload attempt to complete.
TEST(Scenario, BucketUploadsWithReturnExceptionsLetEveryUploadComplete) {
  Runtime rt({.workers = 4});
  Buckets b;
  using Results = std::vector<Outcome<std::string>>;
  const Results results = rt.block_on([](Buckets& b) -> Task<Results> {
    std::vector<Task<std::string>> tasks;
    tasks.push_back(b.upload_bucket("Bucket-A", b.delay_a, false));
    tasks.push_back(b.upload_bucket("Bucket-B", b.delay_b, true));
    tasks.push_back(b.upload_bucket("Bucket-C", b.delay_c, false));
    // B fails first; C (1.0 s) and A (1.5 s) finish after it.
    tasks.push_back([](Buckets& b) -> Task<std::string> {
      co_await b.long_uploads.all_begun.wait();
      b.delay_b.set();
      b.delay_c.set();
      b.delay_a.set();
      co_return "";
    }(b));
    co_return co_await safe_gather(return_exceptions, std::move(tasks));
  }(b));
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].value(), "Success Bucket-A");
  ASSERT_TRUE(results[1].has_exception());
  try {
    std::rethrow_exception(results[1].exception());
  } catch (const std::ios_base::failure& e) {
    EXPECT_NE(std::string(e.what()).find("Failed uploading to Bucket-B"), std::string::npos);
  }
  EXPECT_EQ(results[2].value(), "Success Bucket-C");
  EXPECT_TRUE(b.log.has("Finished upload to Bucket-A"));
  EXPECT_TRUE(b.log.has("Finished upload to Bucket-C"));
  EXPECT_FALSE(b.log.has("Finished upload to Bucket-B"));
}

// ----------------------------------------------------------------------------------------------
// Batch processing with except* (seed: process_batch).
//
//   try:
//       async with asyncio.TaskGroup() as tg: ...
//   except* ValueError as eg: errors.extend(eg.exceptions)
//   except* Exception as eg: errors.extend(eg.exceptions)

TEST(Scenario, ABatchThatFailsIsSplitByErrorTypeAsExceptStarDoes) {
  Runtime rt({.workers = 3});
  Progress fine(6);
  std::atomic<int> arrived{0};
  struct Report {
    std::size_t value_errors = 0;
    std::size_t other_errors = 0;
    std::size_t results = 0;
    bool cancelled_in_group = true;
  };
  const Report report = rt.block_on([](Progress& fine, std::atomic<int>& arrived) -> Task<Report> {
    Report report;
    std::vector<JoinHandle<int>> tasks;
    try {
      co_await task_group([&](TaskGroup& tg) -> Task<int> {
        for (int i = 0; i < fine.expected; ++i) {
          tasks.push_back(tg.spawn([](Progress& fine, int i) -> Task<int> {
            fine.begin();
            Ended end{fine};
            co_return i;
          }(fine, i)));
        }
        while (fine.ended.load() < fine.expected) co_await this_task::yield();
        // Two bad items fail together (each waits, holding its worker, for the other).
        for (int kind = 0; kind < 2; ++kind) {
          tasks.push_back(tg.spawn([](std::atomic<int>& arrived, int kind) -> Task<int> {
            arrived.fetch_add(1);
            spin_until([&] { return arrived.load() == 2; });
            if (kind == 0) throw std::invalid_argument("item 6: negative quantity");
            throw std::runtime_error("item 7: storage offline");
            co_return 0;
          }(arrived, kind)));
        }
        co_return 0;
      });
      for (auto& t : tasks) report.results += t.done() ? 1 : 0;
    } catch (const ExceptionGroup& eg) {
      report.cancelled_in_group = eg.contains<Cancelled>();
      auto [value_errors, rest] = eg.split<std::invalid_argument>();
      if (value_errors) report.value_errors = value_errors->exceptions().size();
      if (rest) {
        auto [others, unmatched] = rest->split<std::exception>();
        if (others) report.other_errors = others->exceptions().size();
        if (unmatched) report.other_errors += 100;  // something that is not a std::exception
      }
    }
    co_return report;
  }(fine, arrived));
  EXPECT_EQ(report.value_errors, 1u);
  EXPECT_EQ(report.other_errors, 1u);
  EXPECT_EQ(report.results, 0u) << "the else branch ran although the batch failed";
  EXPECT_FALSE(report.cancelled_in_group);
}

// ----------------------------------------------------------------------------------------------
// Cancellation handling: clean up, but re-raise (seed: cancellable_operation).
//
//   except asyncio.CancelledError:
//       await cleanup_resource(resource)
//       raise

struct Resource {
  std::atomic<bool> acquired{false};
  std::atomic<bool> cleaned_up{false};
  std::atomic<bool> released{false};
  std::atomic<bool> processing{false};
  Event never;
};

Task<void> cleanup_resource(Resource& r) {
  co_await this_task::checkpoint();  // would throw if the cancellation reached it
  co_await this_task::yield();
  r.cleaned_up.store(true);
}

Task<int> cancellable_operation(Resource& r) {
  r.acquired.store(true);
  bool cancelled = false;
  try {
    r.processing.store(true);
    co_await r.never.wait();
    co_return 1;
  } catch (const Cancelled&) {
    cancelled = true;
  }
  // (A co_await may not appear inside a handler.) Clean up under a shield, then re-raise.
  if (cancelled) {
    co_await weft::shield(cleanup_resource(r));
    r.released.store(true);
    co_await this_task::checkpoint();  // re-raises Cancelled
  }
  co_return 0;
}

TEST(Scenario, ACancelledOperationCleansUpUnderAShieldAndReRaises) {
  Runtime rt({.workers = 2});
  Resource r;
  Future<int> f = rt.submit(cancellable_operation(r));
  ASSERT_TRUE(spin_until([&] { return r.processing.load(); }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(r.cleaned_up.load());
  EXPECT_TRUE(r.released.load());
}

}  // namespace
