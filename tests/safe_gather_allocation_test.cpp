// weft/safe_gather.hpp over weft/inline_vector.hpp: a dynamic fan-out whose children and results
// live in the caller's frame performs no heap allocation once the frame caches are warm. This
// binary links benchmarks/allocation_counter.cpp, whose global operator new counts every
// allocation made on each thread.
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include "../benchmarks/allocation_counter.hpp"

#include <cstdint>
#include <utility>
#include <vector>

namespace {

using weft::InlineVector;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;

constexpr int kMaxWidth = 4;

// A tree whose width changes with depth (known only at run time): leaves count 1.
Task<long> inline_tree(int depth) {
  if (depth == 0) co_return 1;
  InlineVector<Task<long>, kMaxWidth> children;
  for (int i = 0; i < depth % kMaxWidth + 1; ++i) children.push_back(inline_tree(depth - 1));
  long leaves = 0;
  for (long n : co_await safe_gather(std::move(children))) leaves += n;
  co_return leaves;
}

// The same tree through std::vector: two allocations per inner node (tasks and results).
Task<long> vector_tree(int depth) {
  if (depth == 0) co_return 1;
  std::vector<Task<long>> children;
  for (int i = 0; i < depth % kMaxWidth + 1; ++i) children.push_back(vector_tree(depth - 1));
  long leaves = 0;
  for (long n : co_await safe_gather(std::move(children))) leaves += n;
  co_return leaves;
}

struct Counted {
  long leaves;
  std::uint64_t allocations;
};

// Runs `tree` once to warm this worker's frame cache, then again counting the allocations
// made on this thread (one worker: the whole tree runs here).
Task<Counted> count_second_run(Task<long> (*tree)(int), int depth) {
  co_await tree(depth);
  const std::uint64_t before = weft_bench::thread_heap_allocations();
  const long leaves = co_await tree(depth);
  co_return Counted{leaves, weft_bench::thread_heap_allocations() - before};
}

constexpr int kDepth = 9;
constexpr long kLeaves = 2 * 1 * 4 * 3 * 2 * 1 * 4 * 3 * 2;  // widths at depths 9..1

TEST(SafeGatherAllocation, ADynamicFanOutThroughInlineVectorsAllocatesNothingOnceWarm) {
  Runtime rt({.workers = 1});
  const Counted c = rt.block_on(count_second_run(&inline_tree, kDepth));
  EXPECT_EQ(c.leaves, kLeaves);
  EXPECT_EQ(c.allocations, 0u);
}

// The counter works: the std::vector form of the same tree allocates at every inner node.
TEST(SafeGatherAllocation, TheSameFanOutThroughStdVectorAllocatesAtEveryInnerNode) {
  Runtime rt({.workers = 1});
  const Counted c = rt.block_on(count_second_run(&vector_tree, kDepth));
  EXPECT_EQ(c.leaves, kLeaves);
  EXPECT_GE(c.allocations, 2u * static_cast<std::uint64_t>(kLeaves / 2));
}

}  // namespace
