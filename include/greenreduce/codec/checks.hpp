// greenreduce/codec/checks.hpp — the contract every codec must keep, as code.
//
// `check_codec(c, seed)` runs a codec through the promises of
// codec/concept.hpp on fresh random inputs and returns the broken ones as
// readable lines (empty = conforming). The library's tests run it on every
// built-in codec; run it on your own codec before you plug it into a
// collective. It checks:
//   - encode stays within max_encoded_bytes and emits a valid frame with the
//     codec's id and the element count; too small an output is a config_error
//   - the same seed gives the same bytes (reproducibility)
//   - decode_add(frame, acc) == acc + decode(frame) (to one rounding)
//   - every truncation, one extra byte, a wrong codec id, a wrong element count
//     are decode_errors that leave acc untouched; random payload corruption is
//     rejected or decoded, never a crash (codecs with scales check them finite)
//   - a NaN or Inf input is a numeric_error naming its index
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/core/buffer.hpp"

namespace greenreduce::codec {

template <codec C>
std::vector<std::string> check_codec(const C& c, std::uint64_t seed,
                                     std::vector<std::size_t> lengths = {0, 1, 7, 511, 512, 513,
                                                                         4099}) {
  std::vector<std::string> bad;
  auto fail = [&](std::size_t n, const std::string& what) {
    bad.push_back(greenreduce::detail::str(c.name(), " n=", n, " seed=", seed, ": ", what));
  };
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0F, 1.0F);

  for (std::size_t n : lengths) {
    std::vector<float> x(n);
    for (auto& v : x) v = normal(gen);
    const std::size_t cap = c.max_encoded_bytes(n);
    byte_buffer out(cap + 16, std::byte{0xA5});
    rng g(seed, n);
    std::size_t len = 0;
    try {
      len = c.encode(x, std::span<std::byte>(out).first(cap), g);
    } catch (const std::exception& e) {
      fail(n, std::string("encode threw on finite input: ") + e.what());
      continue;
    }
    if (len > cap)
      fail(n, greenreduce::detail::str("encode wrote ", len, " bytes > max_encoded_bytes ", cap));
    for (std::size_t i = cap; i < out.size(); ++i)
      if (out[i] != std::byte{0xA5}) {
        fail(n, "encode wrote past the output span");
        break;
      }
    const std::span<const std::byte> frame(out.data(), len);
    try {
      auto v = parse_frame(frame, frame_expect{}.of(c.id()).count(n));
      (void)v;
    } catch (const std::exception& e) {
      fail(n, std::string("encode's output is not a valid frame: ") + e.what());
      continue;
    }
    {  // reproducibility
      byte_buffer again(cap);
      rng g2(seed, n);
      const std::size_t len2 = c.encode(x, again, g2);
      if (len2 != len || !std::equal(frame.begin(), frame.end(), again.begin()))
        fail(n, "the same seed gave different bytes");
    }
    {  // too small an output: the bound is max_encoded_bytes, whatever encode would write
      try {
        rng g3(seed);
        byte_buffer small(cap - 1);
        c.encode(x, small, g3);
        fail(n, "encode into max_encoded_bytes - 1 bytes did not throw config_error");
      } catch (const config_error&) {
      } catch (const std::exception& e) {
        fail(n, std::string("too small an output threw a non-config_error: ") + e.what());
      }
    }
    std::vector<float> dec(n), acc(n), acc0(n);
    for (auto& v : acc0) v = normal(gen);
    acc = acc0;
    try {
      c.decode(frame, dec);
      c.decode_add(frame, acc);
    } catch (const std::exception& e) {
      fail(n, std::string("decode of a valid frame threw: ") + e.what());
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(dec[i])) {
        fail(n, greenreduce::detail::str("decode gave non-finite element ", i));
        break;
      }
      const float want = acc0[i] + dec[i];
      const float tol = 4e-7F * (std::abs(acc0[i]) + std::abs(dec[i])) + 1e-30F;
      if (!(std::abs(acc[i] - want) <= tol)) {
        fail(n, greenreduce::detail::str("decode_add element ", i, " is ", acc[i],
                                         ", acc + decode is ", want));
        break;
      }
    }
    auto expect_reject = [&](std::span<const std::byte> bytes, std::size_t count,
                             const std::string& what) {
      std::vector<float> a(count, 1.0F);
      try {
        c.decode_add(bytes, a);
        fail(n, what + " was accepted");
      } catch (const decode_error&) {
        for (float v : a)
          if (v != 1.0F) {
            fail(n, what + ": decode_add threw but had already changed acc");
            break;
          }
      } catch (const std::exception& e) {
        fail(n, what + " threw a non-decode_error: " + e.what());
      }
    };
    // Truncations: every length for small frames, a spread for large ones.
    const std::size_t step = len <= 256 ? 1 : len / 97;
    for (std::size_t t = 0; t < len; t += step) {
      std::vector<std::byte> cut(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(t));
      expect_reject(cut, n, greenreduce::detail::str("a frame truncated to ", t, " bytes"));
    }
    std::vector<std::byte> longer(frame.begin(), frame.end());
    longer.push_back(std::byte{0});
    expect_reject(longer, n, "a frame with one trailing byte");
    std::vector<std::byte> other(frame.begin(), frame.end());
    other[5] = static_cast<std::byte>(static_cast<std::uint8_t>(c.id()) ^ 0x40U);
    expect_reject(other, n, "a frame with another codec id");
    expect_reject(frame, n + 1, "a frame decoded into one more element");
    if (n > 0) expect_reject(frame, n - 1, "a frame decoded into one fewer element");
    // Random corruption of the payload: rejected or decoded, never a crash or an
    // out-of-bounds access (run under the sanitizers). A corrupted fp32/fp16
    // value is just another value; integrity is the frame CRC's job.
    for (int trial = 0; trial < 20 && len > frame_header_bytes; ++trial) {
      std::vector<std::byte> junk(frame.begin(), frame.end());
      const std::size_t flips = 1 + gen() % 8;
      for (std::size_t f = 0; f < flips; ++f)
        junk[frame_header_bytes + gen() % (len - frame_header_bytes)] =
            static_cast<std::byte>(gen() & 0xFFU);
      std::vector<float> a(n, 0.0F);
      try {
        c.decode_add(junk, a);
      } catch (const decode_error&) {
      } catch (const std::exception& e) {
        fail(n, std::string("a corrupted payload threw a non-decode_error: ") + e.what());
      }
    }
    // Non-finite input names its index.
    if (n > 0) {
      for (float poison : {std::nanf(""), INFINITY, -INFINITY}) {
        auto y = x;
        const std::size_t at = gen() % n;
        y[at] = poison;
        rng g4(seed);
        try {
          c.encode(y, std::span<std::byte>(out).first(cap), g4);
          fail(n, greenreduce::detail::str("encode accepted ", poison, " at ", at));
        } catch (const numeric_error& e) {
          if (std::string(e.what()).find(greenreduce::detail::str("element ", at, " ")) ==
              std::string::npos)
            fail(n, greenreduce::detail::str("numeric_error does not name element ", at, ": ",
                                             e.what()));
        } catch (const std::exception& e) {
          fail(n, std::string("non-finite input threw a non-numeric_error: ") + e.what());
        }
      }
    }
    const C copy = c;
    if (copy.config_hash() != c.config_hash()) fail(n, "a copy has another config_hash");
  }
  return bad;
}

}  // namespace greenreduce::codec
