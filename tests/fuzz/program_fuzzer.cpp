// A libFuzzer target (issue 10, lane 3): the input is a small program of operations on weft's
// primitives, run on one runtime and checked against the chaos test's invariants.
//
// Decoding (deterministic, bounded: every input is a valid program, and a short one):
//   program   := block                       run as the body of a root task group
//   block     := n = 1 + byte % 4 statements (fewer when the input ends)
//   statement := op = byte % kOps, then the op's argument bytes and nested blocks
// At most kMaxStatements statements in all and kMaxDepth nested blocks; a block past either
// limit is empty. Missing bytes read as 0. Sleeps and timeouts are microseconds, capped.
//
// The ops: fail (throw a real failure), checkpoint, yield, sleep, acquire n permits of a
// shared semaphore around a block (then release them), cancel the innermost group, spawn a
// block into the innermost group (plain or supervised), spawn and join it, spawn and cancel
// its handle, nest a task group, shield a block, run a block under a timeout, wait_any of two
// blocks, gather two blocks.
//
// Invariants checked after every input (a violation aborts, so libFuzzer keeps the input):
//   - the program returned (a hang guard: its Future must end within a minute);
//   - every task that started ended, exactly once;
//   - no semaphore permit was lost;
//   - nothing ran after its group had returned;
//   - every real failure of a plain child is in its group's ExceptionGroup, every failure of
//     a supervised child in its handle's Outcome, every wait_any Outcome holds a value or a
//     known exception;
//   - the program ended with a value, a failure of its own, an ExceptionGroup or Cancelled;
//   - no cancellation was swallowed and no supervised failure went unobserved;
// and ASan/LSan report no leak (libFuzzer checks leaks per input).
//
// A program that holds permits never acquires more below it (its awaits are its own
// descendants), so a program cannot deadlock on the semaphore by itself.
#include <weft/weft.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../task_accounting.hpp"

namespace {

using namespace std::chrono_literals;
using weft::Cancelled;
using weft::ExceptionGroup;
using weft::Task;
using weft::TaskGroup;
using weft_test::Failures;
using weft_test::Life;
using weft_test::reported;

constexpr std::size_t kMaxStatements = 48;
constexpr int kMaxDepth = 5;
constexpr std::size_t kPermits = 3;
constexpr unsigned kMaxSleepUs = 300;
constexpr unsigned kMaxTimeoutUs = 600;

enum class Op : std::uint8_t {
  kFail,
  kCheckpoint,
  kYield,
  kSleep,
  kAcquire,
  kCancelGroup,
  kSpawn,
  kSpawnSupervised,
  kSpawnJoin,
  kSpawnCancel,
  kGroup,
  kShield,
  kTimeout,
  kWaitAny,
  kGather,
  kCount
};
constexpr unsigned kOps = static_cast<unsigned>(Op::kCount);

struct Statement;
using Block = std::vector<Statement>;

struct Statement {
  Op op = Op::kCheckpoint;
  unsigned arg = 0;  // microseconds, or permits
  Block first;       // the nested block(s), for the ops that have them
  Block second;
};

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

class Decoder {
 public:
  explicit Decoder(Reader& r) : r_(r) {}

  Block block(int depth) {
    Block out;
    if (depth > kMaxDepth) return out;
    const unsigned n = 1 + r_.byte() % 4;
    for (unsigned i = 0; i < n && !r_.done() && statements_ < kMaxStatements; ++i) {
      ++statements_;
      out.push_back(statement(depth));
    }
    return out;
  }

 private:
  Statement statement(int depth) {
    Statement s;
    s.op = static_cast<Op>(r_.byte() % kOps);
    switch (s.op) {
      case Op::kSleep:
        s.arg = r_.byte() % (kMaxSleepUs + 1);
        break;
      case Op::kTimeout:
        s.arg = r_.byte() * kMaxTimeoutUs / 255;
        s.first = block(depth + 1);
        break;
      case Op::kAcquire:
        s.arg = 1 + r_.byte() % kPermits;
        s.first = block(depth + 1);
        break;
      case Op::kSpawn:
      case Op::kSpawnSupervised:
      case Op::kSpawnJoin:
      case Op::kSpawnCancel:
      case Op::kGroup:
      case Op::kShield:
        s.first = block(depth + 1);
        break;
      case Op::kWaitAny:
      case Op::kGather:
        s.first = block(depth + 1);
        s.second = block(depth + 1);
        break;
      default:
        break;
    }
    return s;
  }

  Reader& r_;
  std::size_t statements_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Running

// A real failure of the program, unique per throw.
struct ProgramError : std::runtime_error {
  explicit ProgramError(std::uint64_t id) : std::runtime_error("program error " + std::to_string(id)) {}
};

[[noreturn]] void violation(const std::string& what) {
  std::fprintf(stderr, "program_fuzzer: invariant violated: %s\n", what.c_str());
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) violation(what);
}

// The runtime's reports of misuse the programs never commit.
std::atomic<int> g_swallowed{0};
std::atomic<int> g_unobserved{0};

struct World {
  weft::Semaphore permits{kPermits};
  std::atomic<std::uint64_t> next_error{1};
  weft_test::TaskCounts tasks;
};

bool is_known(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const ProgramError&) {
  } catch (const ExceptionGroup&) {
  } catch (const Cancelled&) {
  } catch (const weft::TimeoutError&) {
  } catch (...) {
    return false;
  }
  return true;
}

// A supervised child: its failure must be in its handle's Outcome.
struct Supervised {
  weft::JoinHandle<void> handle;
  std::shared_ptr<std::exception_ptr> failure;  // set by the child when it fails for real
};

// The innermost group, as its descendants see it.
struct Scope {
  World& world;
  TaskGroup* group;
  Failures* failures;
  std::mutex* supervised_mutex;
  std::vector<Supervised>* supervised;  // guarded by *supervised_mutex
  std::shared_ptr<std::atomic<bool>> returned;
  bool holds_permits;
};

Task<void> run_block(const Block& block, Scope scope);

Task<void> kept(Task<void> child, std::shared_ptr<std::exception_ptr> failure) {
  try {
    co_await std::move(child);
  } catch (const Cancelled&) {
    throw;
  } catch (...) {
    *failure = std::current_exception();
    throw;
  }
}

Task<void> group_node(const Block& body, Scope outer) {
  Life life(outer.world.tasks);
  auto returned = std::make_shared<std::atomic<bool>>(false);
  Failures failures;
  std::mutex supervised_mutex;
  std::vector<Supervised> supervised;
  std::exception_ptr ended_with;
  try {
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      co_await run_block(body, Scope{outer.world, &tg, &failures, &supervised_mutex, &supervised,
                                     returned, outer.holds_permits});
    });
  } catch (...) {
    ended_with = std::current_exception();
  }
  returned->store(true);
  check(!outer.returned->load(), "a group ran after its owner had returned");
  std::vector<std::exception_ptr> members;
  try {
    if (ended_with) std::rethrow_exception(ended_with);
  } catch (const ExceptionGroup& eg) {
    members = eg.exceptions();
  } catch (...) {
  }
  for (const std::exception_ptr& f : failures.seen)
    check(std::find(members.begin(), members.end(), f) != members.end(),
          "a child's real failure is missing from its group's ExceptionGroup");
  for (Supervised& s : supervised) {
    check(s.handle.done(), "a supervised child had not ended when its group returned");
    const std::exception_ptr e = s.handle.outcome().exception();
    if (*s.failure) check(e == *s.failure, "a supervised child's failure is missing from its handle");
    if (e) check(is_known(e), "a supervised child ended with an unknown exception");
  }
  if (ended_with) std::rethrow_exception(ended_with);
}

// Spawns `block` into the scope's group as a plain child; an empty handle when the group no
// longer takes children (cancelled meanwhile).
std::optional<weft::JoinHandle<void>> spawn_plain(const Block& block, const Scope& scope) {
  try {
    return scope.group->spawn(reported(run_block(block, scope), *scope.failures));
  } catch (const weft::UsageError&) {
    return std::nullopt;
  }
}

Task<void> run_statement(const Statement& s, const Scope& scope) {
  check(!scope.returned->load(), "a task ran after its group had returned");
  World& w = scope.world;
  switch (s.op) {
    case Op::kFail:
      throw ProgramError(w.next_error.fetch_add(1));
    case Op::kCheckpoint:
      co_await weft::this_task::checkpoint();
      break;
    case Op::kYield:
      co_await weft::this_task::yield();
      break;
    case Op::kSleep:
      co_await weft::sleep_for(std::chrono::microseconds(s.arg));
      break;
    case Op::kAcquire: {
      if (scope.holds_permits) {
        co_await run_block(s.first, scope);
        break;
      }
      weft::SemaphorePermit permit = co_await w.permits.acquire(s.arg);
      Scope holding = scope;
      holding.holds_permits = true;
      co_await run_block(s.first, holding);
      permit.release();
      break;
    }
    case Op::kCancelGroup:
      scope.group->cancel();
      break;
    case Op::kSpawn:
      (void)spawn_plain(s.first, scope);
      break;
    case Op::kSpawnSupervised: {
      auto failure = std::make_shared<std::exception_ptr>();
      try {
        weft::JoinHandle<void> h =
            scope.group->spawn(weft::supervised, kept(run_block(s.first, scope), failure));
        std::lock_guard<std::mutex> lock(*scope.supervised_mutex);
        scope.supervised->push_back(Supervised{std::move(h), std::move(failure)});
      } catch (const weft::UsageError&) {
      }
      break;
    }
    case Op::kSpawnJoin: {
      std::optional<weft::JoinHandle<void>> h = spawn_plain(s.first, scope);
      if (!h) break;
      // A plain child's failure also fails the group (checked there): only the wait ends here.
      try {
        co_await h->join();
      } catch (const Cancelled&) {
        throw;
      } catch (...) {
      }
      break;
    }
    case Op::kSpawnCancel: {
      std::optional<weft::JoinHandle<void>> h = spawn_plain(s.first, scope);
      if (h) h->cancel();
      break;
    }
    case Op::kGroup:
      co_await group_node(s.first, scope);
      break;
    case Op::kShield:
      co_await weft::shield(run_block(s.first, scope));
      break;
    case Op::kTimeout:
      try {
        co_await weft::timeout(std::chrono::microseconds(s.arg), run_block(s.first, scope));
      } catch (const weft::TimeoutError&) {
      }
      break;
    case Op::kWaitAny: {
      auto first = co_await weft::wait_any(run_block(s.first, scope), run_block(s.second, scope));
      check(first.index < 2, "wait_any returned an index out of range");
      if (first.outcome.has_exception())
        check(is_known(first.outcome.exception()), "wait_any's Outcome holds an unknown exception");
      break;
    }
    case Op::kGather:
      (void)co_await weft::safe_gather(run_block(s.first, scope), run_block(s.second, scope));
      break;
    case Op::kCount:
      break;
  }
}

Task<void> run_block(const Block& block, Scope scope) {
  Life life(scope.world.tasks);
  for (const Statement& s : block) co_await run_statement(s, scope);
}

weft::Runtime& runtime() {
  // One runtime for the whole process: starting threads per input would dominate the run.
  static weft::Runtime* rt = [] {
    weft::set_swallowed_cancellation_handler([](std::string_view) { g_swallowed.fetch_add(1); });
    weft::set_unobserved_error_handler([](std::exception_ptr) { g_unobserved.fetch_add(1); });
    return new weft::Runtime({.workers = 2, .name = "fuzz"});
  }();
  return *rt;
}

void run_program(const Block& program) {
  World w;
  auto root_returned = std::make_shared<std::atomic<bool>>(false);
  const Scope root{w, nullptr, nullptr, nullptr, nullptr, root_returned, false};
  weft::Future<void> f = runtime().submit(group_node(program, root));
  if (!f.wait_for(60s)) violation("the program did not return within a minute");
  try {
    f.get();
  } catch (...) {
    check(is_known(std::current_exception()), "the program ended with an unknown exception");
  }
  root_returned->store(true);
  check(w.tasks.balanced(), "a task started and never ended");
  check(w.permits.available() == kPermits, "a semaphore permit was lost");
  check(g_swallowed.load() == 0, "a cancellation was swallowed");
  check(g_unobserved.load() == 0, "a supervised failure went unobserved");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Reader reader(data, size);
  Decoder decoder(reader);
  const Block program = decoder.block(0);
  run_program(program);
  return 0;
}
