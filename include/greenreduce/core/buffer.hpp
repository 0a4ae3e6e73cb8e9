// greenreduce/core/buffer.hpp — cache-line aligned storage for kernels and wire buffers.
//
// 64-byte alignment lets SIMD kernels use aligned loads on the buffers the
// library owns and keeps two ranks' buffers off the same cache line.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

namespace greenreduce {

inline constexpr std::size_t buffer_alignment = 64;

/// std::allocator with `Align`-byte alignment.
template <class T, std::size_t Align = buffer_alignment>
struct aligned_allocator {
  using value_type = T;
  static_assert(Align >= alignof(T) && (Align & (Align - 1)) == 0);

  template <class U>
  struct rebind {
    using other = aligned_allocator<U, Align>;
  };

  aligned_allocator() noexcept = default;
  template <class U>
  aligned_allocator(const aligned_allocator<U, Align>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T) - Align) throw std::bad_alloc();
    const std::size_t bytes = (n * sizeof(T) + Align - 1) / Align * Align;
    void* p = ::operator new(bytes == 0 ? Align : bytes, std::align_val_t{Align});
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{Align}); }

  template <class U>
  bool operator==(const aligned_allocator<U, Align>&) const noexcept {
    return true;
  }
};

/// A growable, 64-byte aligned array.
template <class T>
using aligned_vector = std::vector<T, aligned_allocator<T>>;

/// Raw wire bytes, 64-byte aligned.
using byte_buffer = aligned_vector<std::byte>;

}  // namespace greenreduce
