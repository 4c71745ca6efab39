// weft/inline_vector.hpp: a fixed-capacity vector held inside its owner (a coroutine frame),
// used for dynamic fan-out without a heap allocation. The gathers over it are tested in
// safe_gather_test.cpp and safe_gather_allocation_test.cpp.
#include <weft/inline_vector.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>

#include <weft/errors.hpp>

namespace {

using weft::InlineVector;
using weft::UsageError;

// Counts live objects, so that a test can tell that every element is destroyed exactly once.
struct Tracked {
  static inline int live = 0;
  int value;
  explicit Tracked(int v) : value(v) { ++live; }
  Tracked(const Tracked& o) : value(o.value) { ++live; }
  Tracked(Tracked&& o) noexcept : value(o.value) { ++live; }
  ~Tracked() { --live; }
};

TEST(InlineVector, ElementsKeepTheirInsertionOrder) {
  InlineVector<std::string, 4> v;
  EXPECT_TRUE(v.empty());
  v.push_back("a");
  v.emplace_back("b");
  std::string c = "c";
  v.push_back(c);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0], "a");
  EXPECT_EQ(v[1], "b");
  EXPECT_EQ(v.back(), "c");
  std::string joined;
  for (const std::string& s : v) joined += s;
  EXPECT_EQ(joined, "abc");
  static_assert(InlineVector<std::string, 4>::capacity() == 4);
}

TEST(InlineVector, PushingBeyondTheCapacityThrowsUsageErrorAndKeepsTheElements) {
  InlineVector<std::unique_ptr<int>, 2> v;
  v.push_back(std::make_unique<int>(1));
  v.push_back(std::make_unique<int>(2));
  EXPECT_TRUE(v.full());
  auto third = std::make_unique<int>(3);
  EXPECT_THROW(v.push_back(std::move(third)), UsageError);
  ASSERT_NE(third, nullptr) << "a refused element must not be consumed";
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(*v[0], 1);
  EXPECT_EQ(*v[1], 2);
  EXPECT_THROW(v.reserve(3), UsageError);
  EXPECT_NO_THROW(v.reserve(2));
}

TEST(InlineVector, MovingTransfersTheElementsAndLeavesTheSourceEmpty) {
  Tracked::live = 0;
  {
    InlineVector<Tracked, 8> a;
    for (int i = 0; i < 5; ++i) a.emplace_back(i);
    InlineVector<Tracked, 8> b = std::move(a);
    EXPECT_TRUE(a.empty());
    ASSERT_EQ(b.size(), 5u);
    EXPECT_EQ(Tracked::live, 5);
    InlineVector<Tracked, 8> c;
    c.emplace_back(42);
    c = std::move(b);
    EXPECT_TRUE(b.empty());
    ASSERT_EQ(c.size(), 5u);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(c[i].value, i);
    EXPECT_EQ(Tracked::live, 5);
  }
  EXPECT_EQ(Tracked::live, 0) << "every element is destroyed exactly once";
}

TEST(InlineVector, CopyingCopiesEveryElement) {
  Tracked::live = 0;
  {
    InlineVector<Tracked, 3> a;
    a.emplace_back(7);
    a.emplace_back(8);
    const InlineVector<Tracked, 3> b = a;
    ASSERT_EQ(b.size(), 2u);
    EXPECT_EQ(b[1].value, 8);
    EXPECT_EQ(Tracked::live, 4);
  }
  EXPECT_EQ(Tracked::live, 0);
}

TEST(InlineVector, ClearAndPopBackDestroyTheElementsTheyRemove) {
  Tracked::live = 0;
  InlineVector<Tracked, 4> v;
  for (int i = 0; i < 4; ++i) v.emplace_back(i);
  v.pop_back();
  EXPECT_EQ(Tracked::live, 3);
  EXPECT_EQ(v.back().value, 2);
  v.clear();
  EXPECT_EQ(Tracked::live, 0);
  EXPECT_TRUE(v.empty());
  v.emplace_back(9);  // usable again after clear()
  EXPECT_EQ(v.front().value, 9);
}

TEST(InlineVector, AnInitializerListFillsItInOrder) {
  const InlineVector<int, 5> v{3, 1, 4};
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[2], 4);
  EXPECT_THROW((InlineVector<int, 2>{1, 2, 3}), UsageError);
}

}  // namespace
