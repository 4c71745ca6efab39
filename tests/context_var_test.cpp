// weft/context_var.hpp: task-local values (SPEC §12): children inherit the bindings their parent
// had when they started, through every way of starting one; a child's set() never reaches its
// parent or siblings; to_thread calls see copies; nothing leaks; misuse.
#include <weft/event.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

using weft::ContextVar;
using weft::Event;
using weft::Runtime;
using weft::Task;
using weft::TaskGroup;
using weft::UsageError;

inline ContextVar<std::string> request_id("none");
inline ContextVar<int> depth(0);

Task<std::string> read_id() { co_return request_id.get(); }

TEST(ContextVar, GetReturnsTheInitialValueOutsideATaskAndInATaskThatSetNothing) {
  EXPECT_EQ(request_id.get(), "none");
  Runtime rt({.workers = 1});
  EXPECT_EQ(rt.block_on(read_id()), "none");
}

TEST(ContextVar, SetOutsideATaskThrowsUsageError) {
  EXPECT_THROW(request_id.set("x"), UsageError);
  EXPECT_EQ(request_id.get(), "none");
}

TEST(ContextVar, ATasksSetIsSeenByItsLaterGetsAndByChildrenItStartsAfterIt) {
  Runtime rt({.workers = 2});
  const auto [own, child] = rt.block_on([]() -> Task<std::tuple<std::string, std::string>> {
    request_id.set("r1");
    auto [c] = co_await weft::safe_gather(read_id());
    co_return std::tuple{request_id.get(), c};
  }());
  EXPECT_EQ(own, "r1");
  EXPECT_EQ(child, "r1");
}

TEST(ContextVar, AChildsSetNeverReachesItsParentOrItsSiblings) {
  Runtime rt({.workers = 2});
  const auto [parent, sibling, child] = rt.block_on([]() -> Task<std::tuple<std::string, std::string, std::string>> {
    request_id.set("parent");
    Event child_has_set;
    auto setter = [&]() -> Task<std::string> {
      request_id.set("child");
      child_has_set.set();
      co_return request_id.get();
    };
    auto sibling = [&]() -> Task<std::string> {
      co_await child_has_set.wait();
      co_return request_id.get();
    };
    auto [c, s] = co_await weft::safe_gather(setter(), sibling());
    co_return std::tuple{request_id.get(), s, c};
  }());
  EXPECT_EQ(child, "child");
  EXPECT_EQ(sibling, "parent");
  EXPECT_EQ(parent, "parent");
}

TEST(ContextVar, AChildSeesTheBindingsItsParentHadWhenItStartedNotLaterOnes) {
  Runtime rt({.workers = 2});
  const std::string seen = rt.block_on([]() -> Task<std::string> {
    request_id.set("before");
    Event parent_has_set;
    std::optional<weft::JoinHandle<std::string>> h;
    // In this frame: a lambda coroutine reads its captures through the lambda object.
    auto child = [&]() -> Task<std::string> {
      co_await parent_has_set.wait();
      co_return request_id.get();
    };
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      h.emplace(tg.spawn(child()));
      request_id.set("after");  // the body's binding, after the child started
      parent_has_set.set();
      co_return;
    });
    co_return h->result();
  }());
  EXPECT_EQ(seen, "before");
}

TEST(ContextVar, EveryWayOfStartingAChildInheritsTheBindings) {
  Runtime rt({.workers = 2});
  const std::vector<std::string> seen = rt.block_on([]() -> Task<std::vector<std::string>> {
    request_id.set("ctx");
    std::vector<std::string> seen;
    seen.push_back(co_await read_id());                                           // co_await
    seen.push_back(std::get<0>(co_await weft::safe_gather(read_id())));           // gather
    std::vector<Task<std::string>> v;
    v.push_back(read_id());
    seen.push_back((co_await weft::safe_gather(std::move(v))).at(0));             // vector
    weft::InlineVector<Task<std::string>, 2> iv;
    iv.push_back(read_id());
    seen.push_back((co_await weft::safe_gather(std::move(iv)))[0]);               // inline
    std::optional<weft::JoinHandle<std::string>> h;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      h.emplace(tg.spawn(read_id()));                                             // spawn
      co_return;
    });
    seen.push_back(h->result());
    seen.push_back(co_await weft::timeout(1h, read_id()));                         // timeout
    seen.push_back(co_await weft::timeout_scope(weft::Deadline::after(1h),          // scope
                                                [](weft::TimeoutScope&) { return read_id(); }));
    seen.push_back(co_await weft::shield(read_id()));                              // shield
    weft::CancellationSource source;
    seen.push_back(co_await weft::with_cancellation(source.token(), read_id()));   // token
    auto any = co_await weft::wait_any(read_id(), read_id());                      // wait_any
    seen.push_back(any.outcome.value());
    seen.push_back(co_await weft::to_thread([] { return request_id.get(); }));     // to_thread
    co_return seen;
  }());
  ASSERT_EQ(seen.size(), 11u);
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], "ctx") << "way " << i;
}

TEST(ContextVar, APlainCoAwaitedTaskKeepsItsOwnSetToItself) {
  Runtime rt({.workers = 1});
  const std::string after = rt.block_on([]() -> Task<std::string> {
    request_id.set("caller");
    co_await []() -> Task<void> {
      request_id.set("callee");
      co_return;
    }();
    co_return request_id.get();
  }());
  EXPECT_EQ(after, "caller");
}

TEST(ContextVar, ToThreadSeesCopiesAndItsSetStaysInTheCall) {
  Runtime rt({.workers = 2});
  const auto [inside, after] = rt.block_on([]() -> Task<std::tuple<std::string, std::string>> {
    request_id.set("task");
    const std::string inside = co_await weft::to_thread([] {
      const std::string seen = request_id.get();
      request_id.set("thread");
      return seen + "/" + request_id.get();
    });
    co_return std::tuple{inside, request_id.get()};
  }());
  EXPECT_EQ(inside, "task/thread");
  EXPECT_EQ(after, "task");
}

TEST(ContextVar, AMoveOnlyValueIsVisibleToTasksButNotToToThreadCalls) {
  static ContextVar<std::unique_ptr<int>> boxed;
  Runtime rt({.workers = 2});
  const auto [in_child, in_thread] = rt.block_on([]() -> Task<std::tuple<int, bool>> {
    boxed.set(std::make_unique<int>(5));
    auto child = []() -> Task<int> { co_return *boxed.get(); };
    const int v = co_await child();
    const bool null_there = co_await weft::to_thread([] { return boxed.get() == nullptr; });
    co_return std::tuple{v, null_there};
  }());
  EXPECT_EQ(in_child, 5);
  EXPECT_TRUE(in_thread);
}

TEST(ContextVar, ASubmittedTaskStartsWithNoBindings) {
  Runtime rt({.workers = 2});
  const std::string seen = rt.block_on([](Runtime& rt) -> Task<std::string> {
    request_id.set("outer");
    weft::Future<std::string> f = rt.submit(read_id());
    co_return co_await weft::to_thread([&f] { return f.get(); });
  }(rt));
  EXPECT_EQ(seen, "none");
}

struct Counted {
  static inline std::atomic<int> live{0};
  int v;
  explicit Counted(int x) : v(x) { live.fetch_add(1); }
  Counted(const Counted& o) : v(o.v) { live.fetch_add(1); }
  ~Counted() { live.fetch_sub(1); }
};

// Each value is destroyed once, when the task that set it ends, also when a JoinHandle keeps
// a child's frame alive past the end of the body whose bindings it inherited.
TEST(ContextVar, ValuesAreDestroyedWhenTheTaskThatSetThemEnds) {
  static ContextVar<std::optional<Counted>> counted;
  Runtime rt({.workers = 2});
  const int sum = rt.block_on([]() -> Task<int> {
    std::optional<weft::JoinHandle<int>> h;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      counted.set(Counted(1));
      h.emplace(tg.spawn([]() -> Task<int> {
        const int inherited = counted.get()->v;
        counted.set(Counted(10));
        co_return inherited + counted.get()->v;
      }()));
      co_return;
    });
    // The body has ended (its binding is gone); the child's frame lives on in the handle.
    const int r = h->result();
    h.reset();
    co_return r;
  }());
  EXPECT_EQ(sum, 11);
  EXPECT_EQ(Counted::live.load(), 0);
}

// Bindings stack up along a deep chain of nested tasks and unwind with them.
Task<int> nest(int level) {
  depth.set(level);
  if (level == 200) co_return depth.get();
  const int below = co_await nest(level + 1);
  co_return below + (depth.get() == level ? 0 : 1000);
}

TEST(ContextVar, BindingsFollowADeepChainOfNestedTasks) {
  Runtime rt({.workers = 1});
  EXPECT_EQ(rt.block_on(nest(0)), 200);
}

}  // namespace
