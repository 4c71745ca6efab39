// weft/errors.hpp: the error types and their hierarchy (SPEC §2).
#include <weft/errors.hpp>

#include <gtest/gtest.h>

#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace {

using weft::Cancelled;
using weft::TimeoutError;
using weft::UsageError;

static_assert(!std::is_base_of_v<std::exception, Cancelled>,
              "Cancelled must not be a std::exception (catch (const std::exception&) would swallow it)");
static_assert(std::is_nothrow_default_constructible_v<Cancelled>);
static_assert(std::is_nothrow_copy_constructible_v<Cancelled>);

static_assert(std::is_base_of_v<std::runtime_error, TimeoutError>);
static_assert(std::is_base_of_v<std::exception, TimeoutError>);
static_assert(!std::is_base_of_v<std::logic_error, TimeoutError>);

static_assert(std::is_base_of_v<std::logic_error, UsageError>);
static_assert(std::is_base_of_v<std::exception, UsageError>);
static_assert(!std::is_base_of_v<std::runtime_error, UsageError>);

// Which handler of a typical "catch everything that is an error" chain sees `thrower`'s exception.
template <class F>
std::string caught_by(F thrower) {
  try {
    try {
      thrower();
    } catch (const std::exception&) {
      return "std::exception";
    }
  } catch (const Cancelled&) {
    return "Cancelled";
  } catch (...) {
    return "...";
  }
  return "nothing";
}

TEST(Errors, CancelledIsNotCaughtByACatchOfStdException) {
  EXPECT_EQ(caught_by([] { throw Cancelled{}; }), "Cancelled");
}

TEST(Errors, CancelledIsCaughtByACatchAll) {
  bool caught = false;
  try {
    throw Cancelled{};
  } catch (...) {
    caught = true;
  }
  EXPECT_TRUE(caught);
}

TEST(Errors, CancelledSurvivesAnExceptionPtrRoundTrip) {
  std::exception_ptr p;
  try {
    throw Cancelled{};
  } catch (...) {
    p = std::current_exception();
  }
  EXPECT_THROW(std::rethrow_exception(p), Cancelled);
}

TEST(Errors, TimeoutErrorIsARuntimeError) {
  EXPECT_EQ(caught_by([] { throw TimeoutError(); }), "std::exception");
  bool caught = false;
  try {
    throw TimeoutError();
  } catch (const std::runtime_error& e) {
    caught = true;
    EXPECT_STRNE(e.what(), "");
  }
  EXPECT_TRUE(caught);
}

TEST(Errors, TimeoutErrorKeepsItsMessage) {
  const TimeoutError e("fetch took too long");
  EXPECT_STREQ(e.what(), "fetch took too long");
}

TEST(Errors, UsageErrorIsALogicError) {
  EXPECT_EQ(caught_by([] { throw UsageError("misuse"); }), "std::exception");
  bool caught = false;
  try {
    throw UsageError("misuse");
  } catch (const std::logic_error& e) {
    caught = true;
    EXPECT_NE(std::string(e.what()).find("misuse"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(caught);
}

TEST(Errors, UsageErrorKeepsItsMessage) {
  const UsageError e("awaited twice");
  EXPECT_NE(std::string(e.what()).find("awaited twice"), std::string::npos) << e.what();
}

TEST(Errors, TimeoutErrorAndUsageErrorAreDistinct) {
  EXPECT_THROW(
      {
        try {
          throw TimeoutError();
        } catch (const UsageError&) {
          FAIL() << "a TimeoutError was caught as a UsageError";
        }
      },
      TimeoutError);
  EXPECT_THROW(
      {
        try {
          throw UsageError("x");
        } catch (const TimeoutError&) {
          FAIL() << "a UsageError was caught as a TimeoutError";
        }
      },
      UsageError);
}

}  // namespace
