#include "greenreduce/core/buffer.hpp"

#include <catch2/catch.hpp>
#include <cstdint>

using namespace greenreduce;

TEST_CASE("aligned_vector storage is 64-byte aligned at every size", "[core][buffer]") {
  for (std::size_t n : {0U, 1U, 3U, 64U, 1000U}) {
    aligned_vector<float> v(n, 1.0F);
    v.push_back(2.0F);
    CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % buffer_alignment == 0);
    CHECK(v.back() == 2.0F);
  }
  byte_buffer b(17);
  CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % 64 == 0);
}
