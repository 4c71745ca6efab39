#include "weft/outcome.hpp"

#include <gtest/gtest.h>

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "weft/errors.hpp"
#include "weft/exception_group.hpp"

namespace {

using weft::Cancelled;
using weft::Outcome;
using weft::TimeoutError;

struct MyTimeout : TimeoutError {};
struct MyCancelled : Cancelled {};

template <class E>
std::exception_ptr ptr(E e) {
  return std::make_exception_ptr(std::move(e));
}

static_assert(std::is_same_v<Outcome<int>::value_type, int>);
static_assert(std::is_same_v<Outcome<void>::value_type, std::monostate>);
static_assert(std::is_same_v<decltype(std::declval<Outcome<void>&>().value()), std::monostate&>);
static_assert(std::is_same_v<decltype(std::declval<Outcome<int>&>().value()), int&>);
static_assert(std::is_same_v<decltype(std::declval<const Outcome<int>&>().value()), const int&>);
static_assert(std::is_same_v<decltype(std::declval<Outcome<int>>().value()), int&&>);
static_assert(!std::is_default_constructible_v<Outcome<int>>);
static_assert(std::is_copy_constructible_v<Outcome<int>>);
static_assert(std::is_copy_constructible_v<Outcome<void>>);
static_assert(std::is_copy_constructible_v<Outcome<std::string>>);
static_assert(!std::is_copy_constructible_v<Outcome<std::unique_ptr<int>>>);
static_assert(!std::is_copy_assignable_v<Outcome<std::unique_ptr<int>>>);
static_assert(std::is_nothrow_move_constructible_v<Outcome<std::unique_ptr<int>>>);
static_assert(std::is_move_assignable_v<Outcome<std::unique_ptr<int>>>);
static_assert(std::is_constructible_v<bool, Outcome<int>>);
static_assert(!std::is_convertible_v<Outcome<int>, bool>);

TEST(Outcome, FromValueHoldsTheValue) {
  auto o = Outcome<int>::from_value(42);
  EXPECT_TRUE(o.has_value());
  EXPECT_FALSE(o.has_exception());
  EXPECT_TRUE(static_cast<bool>(o));
  EXPECT_EQ(o.value(), 42);
  EXPECT_EQ(o.exception(), nullptr);
  EXPECT_FALSE(o.is_cancelled());
  EXPECT_FALSE(o.is_timeout());
}

TEST(Outcome, FromExceptionHoldsTheException) {
  std::exception_ptr e = ptr(std::runtime_error("boom"));
  auto o = Outcome<int>::from_exception(e);
  EXPECT_FALSE(o.has_value());
  EXPECT_TRUE(o.has_exception());
  EXPECT_FALSE(static_cast<bool>(o));
  EXPECT_EQ(o.exception(), e);
}

TEST(Outcome, FromExceptionRejectsANullExceptionPtr) {
  EXPECT_THROW(Outcome<int>::from_exception(nullptr), weft::UsageError);
  EXPECT_THROW(Outcome<void>::from_exception(std::exception_ptr()), weft::UsageError);
}

TEST(Outcome, ValueRethrowsTheHeldException) {
  std::exception_ptr e = ptr(std::runtime_error("boom"));
  auto o = Outcome<int>::from_exception(e);
  EXPECT_THROW(o.value(), std::runtime_error);
  EXPECT_THROW(std::as_const(o).value(), std::runtime_error);
  EXPECT_THROW((void)std::move(o).value(), std::runtime_error);
  try {
    (void)Outcome<int>::from_exception(e).value();
  } catch (const std::runtime_error& caught) {
    EXPECT_STREQ(caught.what(), "boom");
    EXPECT_EQ(std::current_exception(), e);  // the same exception object
  }
}

TEST(Outcome, ValueRethrowsCancelledWhichIsNotAStdException) {
  auto o = Outcome<int>::from_exception(ptr(Cancelled{}));
  EXPECT_THROW(o.value(), Cancelled);
}

TEST(Outcome, ValueReturnsAReferenceThatCanModifyTheHeldValue) {
  auto o = Outcome<std::string>::from_value("abc");
  o.value() += "def";
  EXPECT_EQ(o.value(), "abcdef");
  const auto& c = o;
  EXPECT_EQ(&c.value(), &o.value());
}

TEST(Outcome, IsCancelledIsTrueForCancelledAndDerivedTypes) {
  EXPECT_TRUE(Outcome<int>::from_exception(ptr(Cancelled{})).is_cancelled());
  EXPECT_TRUE(Outcome<int>::from_exception(ptr(MyCancelled{})).is_cancelled());
  EXPECT_FALSE(Outcome<int>::from_exception(ptr(Cancelled{})).is_timeout());
}

TEST(Outcome, IsCancelledIsFalseForOtherExceptionsAndValues) {
  EXPECT_FALSE(Outcome<int>::from_exception(ptr(std::runtime_error("x"))).is_cancelled());
  EXPECT_FALSE(Outcome<int>::from_exception(ptr(TimeoutError())).is_cancelled());
  EXPECT_FALSE(Outcome<int>::from_exception(ptr(42)).is_cancelled());
  EXPECT_FALSE(Outcome<int>::from_value(0).is_cancelled());
}

TEST(Outcome, IsTimeoutIsTrueForTimeoutErrorAndDerivedTypes) {
  EXPECT_TRUE(Outcome<int>::from_exception(ptr(TimeoutError())).is_timeout());
  EXPECT_TRUE(Outcome<int>::from_exception(ptr(MyTimeout())).is_timeout());
  EXPECT_FALSE(Outcome<int>::from_exception(ptr(MyTimeout())).is_cancelled());
}

TEST(Outcome, IsTimeoutIsFalseForOtherExceptionsAndValues) {
  EXPECT_FALSE(Outcome<int>::from_exception(ptr(std::runtime_error("x"))).is_timeout());
  EXPECT_FALSE(Outcome<int>::from_exception(ptr(Cancelled{})).is_timeout());
  EXPECT_FALSE(Outcome<int>::from_value(0).is_timeout());
}

TEST(Outcome, IsCancelledAndIsTimeoutDoNotLookInsideExceptionGroups) {
  auto o = Outcome<int>::from_exception(
      ptr(weft::ExceptionGroup({ptr(Cancelled{}), ptr(TimeoutError())})));
  EXPECT_FALSE(o.is_cancelled());
  EXPECT_FALSE(o.is_timeout());
  EXPECT_THROW(o.value(), weft::ExceptionGroup);
}

TEST(Outcome, VoidOutcomeHoldsAMonostate) {
  auto o = Outcome<void>::from_value();
  EXPECT_TRUE(o.has_value());
  EXPECT_EQ(o.value(), std::monostate{});
  EXPECT_EQ(o.exception(), nullptr);
  auto explicit_monostate = Outcome<void>::from_value(std::monostate{});
  EXPECT_TRUE(explicit_monostate.has_value());
}

TEST(Outcome, VoidOutcomeRethrowsFromValue) {
  auto o = Outcome<void>::from_exception(ptr(TimeoutError()));
  EXPECT_TRUE(o.has_exception());
  EXPECT_TRUE(o.is_timeout());
  EXPECT_THROW(o.value(), TimeoutError);
}

TEST(Outcome, VoidOutcomesCanBeCopied) {
  auto o = Outcome<void>::from_exception(ptr(Cancelled{}));
  Outcome<void> copy = o;
  EXPECT_TRUE(copy.is_cancelled());
  EXPECT_EQ(copy.exception(), o.exception());
}

TEST(Outcome, MoveOnlyValuesAreMovedInAndOut) {
  auto o = Outcome<std::unique_ptr<int>>::from_value(std::make_unique<int>(7));
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(*o.value(), 7);
  Outcome<std::unique_ptr<int>> moved = std::move(o);
  std::unique_ptr<int> p = std::move(moved).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 7);
}

TEST(Outcome, MoveOnlyOutcomesCanHoldExceptions) {
  auto o = Outcome<std::unique_ptr<int>>::from_exception(ptr(std::runtime_error("x")));
  auto moved = std::move(o);
  EXPECT_TRUE(moved.has_exception());
  EXPECT_THROW((void)std::move(moved).value(), std::runtime_error);
}

TEST(Outcome, CopiesAreIndependent) {
  auto o = Outcome<std::string>::from_value("a");
  auto copy = o;
  copy.value() = "b";
  EXPECT_EQ(o.value(), "a");
  EXPECT_EQ(copy.value(), "b");
  copy = Outcome<std::string>::from_exception(ptr(Cancelled{}));
  EXPECT_TRUE(copy.is_cancelled());
  EXPECT_TRUE(o.has_value());
}

TEST(Outcome, ValueOrReturnsTheValueWhenOneIsHeld) {
  auto o = Outcome<int>::from_value(3);
  EXPECT_EQ(o.value_or(-1), 3);
  EXPECT_EQ(Outcome<std::string>::from_value("v").value_or("fallback"), "v");
}

TEST(Outcome, ValueOrReturnsTheFallbackWithoutThrowingTheException) {
  auto o = Outcome<int>::from_exception(ptr(std::runtime_error("x")));
  EXPECT_EQ(o.value_or(-1), -1);
  auto s = Outcome<std::string>::from_exception(ptr(Cancelled{}));
  EXPECT_EQ(s.value_or("fallback"), std::string("fallback"));
  EXPECT_EQ(Outcome<void>::from_exception(ptr(Cancelled{})).value_or(std::monostate{}),
            std::monostate{});
}

TEST(Outcome, ValueOrOnAnRvalueMovesTheValueOut) {
  auto o = Outcome<std::unique_ptr<int>>::from_value(std::make_unique<int>(5));
  std::unique_ptr<int> p = std::move(o).value_or(nullptr);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 5);
  auto failed = Outcome<std::unique_ptr<int>>::from_exception(ptr(Cancelled{}));
  EXPECT_EQ(std::move(failed).value_or(nullptr), nullptr);
}

TEST(Outcome, ExplicitBoolConversionIsHasValue) {
  if (auto o = Outcome<int>::from_value(1)) {
    SUCCEED();
  } else {
    FAIL() << "a value outcome is false";
  }
  EXPECT_FALSE(Outcome<int>::from_exception(ptr(1)));
}

TEST(Outcome, AnExceptionPtrValueIsNotMistakenForAnException) {
  std::exception_ptr e = ptr(std::runtime_error("held as a value"));
  auto o = Outcome<std::exception_ptr>::from_value(e);
  EXPECT_TRUE(o.has_value());
  EXPECT_EQ(o.exception(), nullptr);
  EXPECT_EQ(o.value(), e);
  auto null_value = Outcome<std::exception_ptr>::from_value(nullptr);
  EXPECT_TRUE(null_value.has_value());
}

}  // namespace
