#include "weft/exception_group.hpp"

#include <gtest/gtest.h>

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "weft/errors.hpp"

namespace {

using weft::Cancelled;
using weft::ExceptionGroup;
using weft::TimeoutError;

struct MyTimeout : TimeoutError {
  MyTimeout() : TimeoutError("my timeout") {}
};
struct MyCancelled : Cancelled {};

template <class E>
std::exception_ptr ptr(E e) {
  return std::make_exception_ptr(std::move(e));
}
std::exception_ptr runtime(const char* what) { return ptr(std::runtime_error(what)); }
std::exception_ptr group(std::vector<std::exception_ptr> members) {
  return ptr(ExceptionGroup(std::move(members)));
}

// A description of a member: its what(), "Cancelled", "int", or "{...}" for a nested group.
std::string shape(const std::exception_ptr& e);
std::string shape(const ExceptionGroup& g) {
  std::string s = "{";
  for (std::size_t i = 0; i < g.exceptions().size(); ++i) {
    if (i) s += ", ";
    s += shape(g.exceptions()[i]);
  }
  return s + "}";
}
std::string shape(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const ExceptionGroup& g) {
    return shape(g);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (const Cancelled&) {
    return "Cancelled";
  } catch (...) {
    return "other";
  }
}
std::string shape(const std::optional<ExceptionGroup>& g) { return g ? shape(*g) : "nullopt"; }

static_assert(std::is_base_of_v<std::exception, ExceptionGroup>);
static_assert(std::is_nothrow_copy_constructible_v<ExceptionGroup>);
static_assert(std::is_nothrow_copy_assignable_v<ExceptionGroup>);
static_assert(!std::is_convertible_v<std::vector<std::exception_ptr>, ExceptionGroup>);

TEST(ExceptionGroup, ExceptionsReturnsTheMembersInOrder) {
  std::vector<std::exception_ptr> members{runtime("a"), ptr(Cancelled{}), ptr(42)};
  ExceptionGroup eg(members);
  EXPECT_EQ(eg.exceptions(), members);
}

TEST(ExceptionGroup, ExceptionsKeepsNestedGroupsAsSingleMembers) {
  ExceptionGroup eg({runtime("a"), group({runtime("b"), runtime("c")})});
  ASSERT_EQ(eg.exceptions().size(), 2u);
  EXPECT_EQ(shape(eg), "{a, {b, c}}");
}

TEST(ExceptionGroup, ConstructorRejectsANullMember) {
  EXPECT_THROW(ExceptionGroup({runtime("a"), std::exception_ptr()}), weft::UsageError);
}

TEST(ExceptionGroup, WhatListsTheMessageOfEveryMember) {
  ExceptionGroup eg({runtime("disk full"), ptr(TimeoutError())});
  EXPECT_STREQ(eg.what(), "weft: 2 exceptions: disk full; weft: deadline exceeded");
}

TEST(ExceptionGroup, WhatNamesCancelledAndNonStandardExceptions) {
  ExceptionGroup eg({ptr(Cancelled{}), ptr(42), ptr(std::string("text"))});
  EXPECT_STREQ(eg.what(),
               "weft: 3 exceptions: Cancelled; non-standard exception; non-standard exception");
}

TEST(ExceptionGroup, WhatUsesTheSingularForOneMember) {
  EXPECT_STREQ(ExceptionGroup({runtime("boom")}).what(), "weft: 1 exception: boom");
}

TEST(ExceptionGroup, WhatOfAnEmptyGroupSaysZeroExceptions) {
  EXPECT_STREQ(ExceptionGroup({}).what(), "weft: 0 exceptions");
}

TEST(ExceptionGroup, WhatShowsNestedGroupsInParentheses) {
  ExceptionGroup eg({runtime("a"), group({runtime("b"), ptr(Cancelled{})})});
  EXPECT_STREQ(eg.what(), "weft: 2 exceptions: a; (weft: 2 exceptions: b; Cancelled)");
}

TEST(ExceptionGroup, WhatIsStableAcrossCallsAndCopies) {
  ExceptionGroup eg({runtime("a")});
  const char* first = eg.what();
  EXPECT_EQ(eg.what(), first);
  ExceptionGroup copy = eg;
  EXPECT_STREQ(copy.what(), first);
}

TEST(ExceptionGroup, CopiesShareTheMembers) {
  ExceptionGroup eg({runtime("a"), ptr(Cancelled{})});
  ExceptionGroup copy = eg;
  EXPECT_EQ(copy.exceptions(), eg.exceptions());
  ExceptionGroup assigned({});
  assigned = eg;
  EXPECT_EQ(assigned.exceptions(), eg.exceptions());
  ExceptionGroup moved = std::move(copy);
  EXPECT_EQ(moved.exceptions(), eg.exceptions());
}

TEST(ExceptionGroup, CanBeThrownAndCaughtAsAStdException) {
  try {
    throw ExceptionGroup({runtime("a")});
  } catch (const std::exception& e) {
    EXPECT_STREQ(e.what(), "weft: 1 exception: a");
    return;
  }
  FAIL() << "not caught";
}

TEST(ExceptionGroup, ContainsFindsAMemberOfTheExactType) {
  ExceptionGroup eg({runtime("a"), ptr(TimeoutError())});
  EXPECT_TRUE(eg.contains<TimeoutError>());
  EXPECT_TRUE(eg.contains<std::runtime_error>());
}

TEST(ExceptionGroup, ContainsFindsAMemberOfADerivedType) {
  ExceptionGroup eg({ptr(MyTimeout())});
  EXPECT_TRUE(eg.contains<TimeoutError>());
  EXPECT_TRUE(eg.contains<std::runtime_error>());
  EXPECT_TRUE(eg.contains<std::exception>());
  EXPECT_TRUE(eg.contains<const TimeoutError>());
}

TEST(ExceptionGroup, ContainsIsFalseWhenOnlyABaseTypeIsPresent) {
  ExceptionGroup eg({runtime("a"), ptr(std::logic_error("b"))});
  EXPECT_FALSE(eg.contains<TimeoutError>());
  EXPECT_FALSE(eg.contains<std::invalid_argument>());
  EXPECT_FALSE(eg.contains<Cancelled>());
}

TEST(ExceptionGroup, ContainsFindsCancelledAlthoughItIsNotAStdException) {
  ExceptionGroup eg({runtime("a"), ptr(Cancelled{})});
  EXPECT_TRUE(eg.contains<Cancelled>());
  EXPECT_TRUE(ExceptionGroup({ptr(MyCancelled{})}).contains<Cancelled>());
  EXPECT_FALSE(ExceptionGroup({ptr(Cancelled{})}).contains<std::exception>());
}

TEST(ExceptionGroup, ContainsFindsNonStandardExceptions) {
  ExceptionGroup eg({ptr(42)});
  EXPECT_TRUE(eg.contains<int>());
  EXPECT_FALSE(eg.contains<long>());
}

TEST(ExceptionGroup, ContainsLooksInsideNestedGroupsAtAnyDepth) {
  ExceptionGroup eg({runtime("a"), group({group({ptr(Cancelled{})}), runtime("b")})});
  EXPECT_TRUE(eg.contains<Cancelled>());
  EXPECT_FALSE(eg.contains<TimeoutError>());
}

TEST(ExceptionGroup, ContainsTreatsNestedGroupsAsTransparent) {
  // The nested group is a std::exception, but only its leaves are tested.
  ExceptionGroup eg({ptr(Cancelled{}), group({ptr(Cancelled{}), ptr(42)})});
  EXPECT_FALSE(eg.contains<std::exception>());
  ExceptionGroup with_leaf({ptr(Cancelled{}), group({runtime("x")})});
  EXPECT_TRUE(with_leaf.contains<std::exception>());
}

TEST(ExceptionGroup, ContainsIsFalseForAnEmptyGroup) {
  EXPECT_FALSE(ExceptionGroup({}).contains<std::exception>());
  EXPECT_FALSE(ExceptionGroup({group({})}).contains<std::exception>());
}

TEST(ExceptionGroup, SplitSeparatesMatchingMembersFromTheRest) {
  ExceptionGroup eg({runtime("a"), ptr(TimeoutError("t1")), ptr(Cancelled{}), ptr(MyTimeout())});
  auto [timeouts, rest] = eg.split<TimeoutError>();
  EXPECT_EQ(shape(timeouts), "{t1, my timeout}");
  EXPECT_EQ(shape(rest), "{a, Cancelled}");
}

TEST(ExceptionGroup, SplitKeepsTheSameExceptionObjects) {
  std::exception_ptr a = runtime("a");
  std::exception_ptr c = ptr(Cancelled{});
  auto [cancelled, rest] = ExceptionGroup({a, c}).split<Cancelled>();
  ASSERT_TRUE(cancelled && rest);
  EXPECT_EQ(cancelled->exceptions(), std::vector<std::exception_ptr>{c});
  EXPECT_EQ(rest->exceptions(), std::vector<std::exception_ptr>{a});
}

TEST(ExceptionGroup, SplitReturnsNulloptForTheRestWhenEverythingMatches) {
  ExceptionGroup eg({ptr(Cancelled{}), ptr(MyCancelled{})});
  auto [cancelled, rest] = eg.split<Cancelled>();
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_EQ(cancelled->exceptions(), eg.exceptions());
  EXPECT_STREQ(cancelled->what(), eg.what());
  EXPECT_FALSE(rest.has_value());
}

TEST(ExceptionGroup, SplitReturnsNulloptForTheMatchesWhenNothingMatches) {
  ExceptionGroup eg({runtime("a"), ptr(42)});
  auto [timeouts, rest] = eg.split<TimeoutError>();
  EXPECT_FALSE(timeouts.has_value());
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(rest->exceptions(), eg.exceptions());
}

TEST(ExceptionGroup, SplitOfAnEmptyGroupReturnsTwoNullopts) {
  auto [matching, rest] = ExceptionGroup({}).split<std::exception>();
  EXPECT_FALSE(matching.has_value());
  EXPECT_FALSE(rest.has_value());
}

TEST(ExceptionGroup, SplitPreservesTheOrderOfMembers) {
  ExceptionGroup eg({runtime("1"), ptr(Cancelled{}), runtime("2"), ptr(Cancelled{}), runtime("3")});
  auto [matching, rest] = eg.split<std::runtime_error>();
  EXPECT_EQ(shape(matching), "{1, 2, 3}");
  EXPECT_EQ(shape(rest), "{Cancelled, Cancelled}");
}

TEST(ExceptionGroup, SplitSplitsNestedGroupsRecursivelyPreservingTheirStructure) {
  ExceptionGroup eg({runtime("a"), ptr(Cancelled{}),
                     group({ptr(TimeoutError("t")), group({ptr(Cancelled{}), runtime("b")})})});
  auto [cancelled, rest] = eg.split<Cancelled>();
  EXPECT_EQ(shape(cancelled), "{Cancelled, {{Cancelled}}}");
  EXPECT_EQ(shape(rest), "{a, {t, {b}}}");
}

TEST(ExceptionGroup, SplitKeepsAWhollyMatchingNestedGroupAsTheSameObject) {
  std::exception_ptr all_cancelled = group({ptr(Cancelled{}), ptr(Cancelled{})});
  std::exception_ptr none_cancelled = group({runtime("x")});
  auto [cancelled, rest] = ExceptionGroup({all_cancelled, runtime("a"), none_cancelled})
                               .split<Cancelled>();
  ASSERT_TRUE(cancelled && rest);
  EXPECT_EQ(cancelled->exceptions(), std::vector<std::exception_ptr>{all_cancelled});
  ASSERT_EQ(rest->exceptions().size(), 2u);
  EXPECT_EQ(rest->exceptions()[1], none_cancelled);
}

TEST(ExceptionGroup, SplitBuildsNewMessagesForTheNewGroups) {
  ExceptionGroup eg({runtime("a"), group({ptr(Cancelled{}), runtime("b")})});
  auto [cancelled, rest] = eg.split<Cancelled>();
  ASSERT_TRUE(cancelled && rest);
  EXPECT_STREQ(cancelled->what(), "weft: 1 exception: (weft: 1 exception: Cancelled)");
  EXPECT_STREQ(rest->what(), "weft: 2 exceptions: a; (weft: 1 exception: b)");
}

TEST(ExceptionGroup, SplitDropsEmptyNestedGroups) {
  ExceptionGroup eg({runtime("a"), group({}), group({group({})})});
  auto [matching, rest] = eg.split<std::runtime_error>();
  EXPECT_EQ(shape(matching), "{a}");
  EXPECT_FALSE(rest.has_value());
}

TEST(ExceptionGroup, SplitByStdExceptionLeavesCancelledInTheRest) {
  ExceptionGroup eg({ptr(Cancelled{}), group({runtime("a"), ptr(Cancelled{})}), ptr(42)});
  auto [standard, rest] = eg.split<std::exception>();
  EXPECT_EQ(shape(standard), "{{a}}");
  EXPECT_EQ(shape(rest), "{Cancelled, {Cancelled}, other}");
}

TEST(ExceptionGroup, SplitMatchesDerivedTypes) {
  ExceptionGroup eg({ptr(MyTimeout()), ptr(MyCancelled{}), runtime("a")});
  auto [cancelled, rest] = eg.split<Cancelled>();
  EXPECT_EQ(shape(cancelled), "{Cancelled}");
  EXPECT_EQ(shape(rest), "{my timeout, a}");
  auto [runtime_errors, others] = eg.split<std::runtime_error>();
  EXPECT_EQ(shape(runtime_errors), "{my timeout, a}");
  EXPECT_EQ(shape(others), "{Cancelled}");
}

TEST(ExceptionGroup, SplitResultsCanBeSplitAgain) {
  ExceptionGroup eg({runtime("a"), ptr(TimeoutError("t")), ptr(Cancelled{})});
  auto [cancelled, rest] = eg.split<Cancelled>();
  ASSERT_TRUE(rest.has_value());
  auto [timeouts, others] = rest->split<TimeoutError>();
  EXPECT_EQ(shape(timeouts), "{t}");
  EXPECT_EQ(shape(others), "{a}");
}

}  // namespace
