// Every device codec against its CPU codec: the same bytes for the same input
// and seed, decode / decode_add equal bit for bit, poisoned outputs to catch
// unwritten bytes, the edge lengths, and the typed errors. Needs a GPU; skips
// (exit 77) without one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gpu.hpp"
#include "greenreduce/cuda/codecs.cuh"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
namespace gr = greenreduce;
using gr::test::gpu::download;
using gr::test::gpu::upload;

namespace {

const bool present = gr::test::gpu::skip_without_device();

const std::vector<std::size_t> lengths = {0,   1,   7,   63,   64,   255,   256,   257,
                                          511, 512, 513, 1023, 4099, 65536, 70001, 1048579};

std::vector<float> gradient(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0F, 1.0F);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(gen) * (gen() % 16 == 0 ? 1e-3F : 1.0F);
  return x;
}

/// Encodes on the CPU and the GPU, compares bytes (and the poison past the
/// frame), then decodes the CPU frame on the GPU and compares with the CPU.
template <class Dev>
void same_as_cpu(const Dev& dev, std::size_t n, std::uint64_t seed) {
  const auto& cpu = dev.host();
  INFO(dev.name() << " n=" << n << " seed=" << seed);
  const std::vector<float> x = gradient(n, seed);
  const std::size_t cap = cpu.max_encoded_bytes(n);
  std::vector<std::byte> want(cap);
  rng gc(seed, 5);
  gc.advance(n % 3);
  rng gd = gc;
  const std::size_t wl = cpu.encode(x, want, gc);

  auto dx = upload(x);
  gr::cuda::device_buffer<std::byte> out(cap + 64);
  GREENREDUCE_CUDA_CHECK(cudaMemset(out.data(), 0xA5, out.bytes()));
  const std::size_t gl = dev.encode(dx.data(), n, out.data(), cap, gd, nullptr);
  REQUIRE(gl == wl);
  REQUIRE(gd.offset == gc.offset);
  const auto got = download(out.data(), cap + 64);
  const auto diff =
      std::mismatch(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(wl), got.begin());
  INFO("first differing byte " << (diff.first - want.begin()) << " of " << wl);
  REQUIRE(diff.first == want.begin() + static_cast<std::ptrdiff_t>(wl));
  for (std::size_t i = gl; i < got.size(); ++i) REQUIRE(got[i] == std::byte{0xA5});

  // decode and decode_add of the CPU frame on the device.
  const std::vector<std::byte> frame(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(wl));
  auto df = upload(frame);
  std::vector<float> dec(n), acc = gradient(n, seed + 1), acc_cpu = acc;
  cpu.decode(std::span<const std::byte>(frame), dec);
  cpu.decode_add(std::span<const std::byte>(frame), acc_cpu);
  auto dout = upload(std::vector<float>(n, std::nanf("")));
  auto dacc = upload(acc);
  dev.decode(df.data(), wl, dout.data(), n, nullptr);
  dev.decode_add(df.data(), wl, dacc.data(), n, nullptr);
  const auto gdec = download(dout.data(), n), gacc = download(dacc.data(), n);
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(std::bit_cast<std::uint32_t>(gdec[i]) == std::bit_cast<std::uint32_t>(dec[i]));
    REQUIRE(std::bit_cast<std::uint32_t>(gacc[i]) == std::bit_cast<std::uint32_t>(acc_cpu[i]));
  }

  // The element-at-a-time paths: a frame 4 bytes and an output one float past
  // the 16-byte boundaries the vectorised decoders need.
  gr::cuda::device_buffer<std::byte> df4(wl + 4);
  gr::cuda::device_buffer<float> dacc4(n + 1);
  GREENREDUCE_CUDA_CHECK(cudaMemcpy(df4.data() + 4, frame.data(), wl, cudaMemcpyHostToDevice));
  if (n > 0)
    GREENREDUCE_CUDA_CHECK(cudaMemcpy(dacc4.data() + 1, acc.data(), 4 * n, cudaMemcpyHostToDevice));
  dev.decode_add(df4.data() + 4, wl, dacc4.data() + 1, n, nullptr);
  std::vector<float> gacc4(n);
  if (n > 0)
    GREENREDUCE_CUDA_CHECK(
        cudaMemcpy(gacc4.data(), dacc4.data() + 1, 4 * n, cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < n; ++i)
    REQUIRE(std::bit_cast<std::uint32_t>(gacc4[i]) == std::bit_cast<std::uint32_t>(acc_cpu[i]));
}

template <class Dev>
void rejects_non_finite(const Dev& dev, std::uint64_t seed) {
  for (std::size_t n : {1U, 513U, 70001U}) {
    std::vector<float> x = gradient(n, seed);
    const std::size_t at = (seed + n) % n;
    x[at] = std::nanf("");
    if (at + 1 < n) x[at + 1] = INFINITY;
    auto dx = upload(x);
    gr::cuda::device_buffer<std::byte> out(dev.max_encoded_bytes(n));
    rng g(seed);
    CHECK_THROWS_MATCHES(dev.encode(dx.data(), n, out.data(), out.size(), g, nullptr),
                         numeric_error, gr::test::what_has(detail::str("element ", at, " ")));
  }
}

/// Frames the CPU rejects are decode_errors on the device too, before acc changes.
template <class Dev>
void rejects_bad_frames(const Dev& dev, std::uint64_t seed) {
  const std::size_t n = 1000;
  const std::vector<float> x = gradient(n, seed);
  std::vector<std::byte> frame(dev.host().max_encoded_bytes(n));
  rng g(seed);
  frame.resize(dev.host().encode(x, frame, g));
  auto expect_reject = [&](std::vector<std::byte> bad, std::size_t count, const char* what) {
    INFO(dev.name() << ": " << what);
    std::vector<float> ones(count, 1.0F);
    auto db = upload(bad);
    auto dacc = upload(ones);
    CHECK_THROWS_AS(dev.decode_add(db.data(), bad.size(), dacc.data(), count, nullptr),
                    decode_error);
    CHECK(download(dacc.data(), count) == ones);
  };
  expect_reject(std::vector<std::byte>(frame.begin(), frame.begin() + 31), n, "truncated header");
  expect_reject(std::vector<std::byte>(frame.begin(), frame.end() - 1), n, "truncated payload");
  auto longer = frame;
  longer.push_back(std::byte{0});
  expect_reject(longer, n, "a trailing byte");
  auto other = frame;
  other[5] = static_cast<std::byte>(static_cast<unsigned>(other[5]) ^ 0x40U);
  expect_reject(other, n, "another codec id");
  expect_reject(frame, n + 1, "one more element");
}

}  // namespace

TEST_CASE("device int8 writes the CPU's bytes and decodes like the CPU", "[gpu][int8]") {
  const auto seed = gr::test::seed(901);
  for (std::size_t n : lengths)
    for (const auto& c : {codec::int8::nearest(), codec::int8::stochastic(), codec::int8(1),
                          codec::int8(100), codec::int8(100, codec::rounding::stochastic),
                          codec::int8(2044), codec::int8(64, codec::rounding::stochastic),
                          codec::int8(1984, codec::rounding::stochastic), codec::int8(4096)})
      same_as_cpu(gr::cuda::int8_codec(c), n, seed);
  rejects_non_finite(gr::cuda::int8_codec(), seed);
  rejects_bad_frames(gr::cuda::int8_codec(), seed);
  // A scale that is not finite: the device check names the bucket.
  const std::size_t n = 1000;
  const codec::int8 c;
  std::vector<std::byte> frame(c.max_encoded_bytes(n));
  rng g(seed);
  c.encode(gradient(n, seed), frame, g);
  const float nan = std::nanf("");
  std::memcpy(frame.data() + frame_header_bytes + 4 + 4, &nan, 4);
  auto df = upload(frame);
  auto dacc = upload(std::vector<float>(n, 1.0F));
  CHECK_THROWS_MATCHES(
      gr::cuda::int8_codec(c).decode_add(df.data(), frame.size(), dacc.data(), n, nullptr),
      decode_error, gr::test::what_has("bucket 1 has scale"));
}

TEST_CASE("device ternary writes the CPU's bytes for the same seed", "[gpu][ternary]") {
  const auto seed = gr::test::seed(902);
  for (std::size_t n : lengths)
    for (const auto& c : {codec::ternary(), codec::ternary::unclipped(256), codec::ternary(4096),
                          codec::ternary::per_tensor(0.0F)})
      same_as_cpu(gr::cuda::ternary_codec(c), n, seed);
  for (std::size_t n : {0U, 1U, 257U, 70001U})  // clipped per tensor: one block, slow but exact
    same_as_cpu(gr::cuda::ternary_codec(codec::ternary::per_tensor()), n, seed);
  rejects_non_finite(gr::cuda::ternary_codec(), seed);
  rejects_bad_frames(gr::cuda::ternary_codec(), seed);
  // The invalid code 0b11.
  const std::size_t n = 1000;
  const codec::ternary c;
  std::vector<std::byte> frame(c.max_encoded_bytes(n));
  rng g(seed);
  c.encode(gradient(n, seed), frame, g);
  frame.back() = std::byte{0x03};
  auto df = upload(frame);
  auto dacc = upload(std::vector<float>(n, 1.0F));
  CHECK_THROWS_MATCHES(
      gr::cuda::ternary_codec(c).decode_add(df.data(), frame.size(), dacc.data(), n, nullptr),
      decode_error, gr::test::what_has("invalid code"));
}

TEST_CASE("device fp16, bf16 and none write the CPU's bytes", "[gpu][half]") {
  const auto seed = gr::test::seed(903);
  for (std::size_t n : lengths) {
    same_as_cpu(gr::cuda::fp16_codec(), n, seed);
    same_as_cpu(gr::cuda::bf16_codec(), n, seed);
    same_as_cpu(gr::cuda::none_codec(), n, seed);
  }
  rejects_non_finite(gr::cuda::fp16_codec(), seed);
  rejects_non_finite(gr::cuda::bf16_codec(), seed);
  rejects_non_finite(gr::cuda::none_codec(), seed);
  rejects_bad_frames(gr::cuda::fp16_codec(), seed);
  rejects_bad_frames(gr::cuda::none_codec(), seed);
  // Out of fp16's range but finite: named as such.
  std::vector<float> x(9, 1.0F);
  x[4] = 70000.0F;
  auto dx = upload(x);
  gr::cuda::device_buffer<std::byte> out(gr::cuda::fp16_codec().max_encoded_bytes(9));
  rng g(seed);
  CHECK_THROWS_MATCHES(
      gr::cuda::fp16_codec().encode(dx.data(), 9, out.data(), out.size(), g, nullptr),
      numeric_error, gr::test::what_has("element 4 is 70000, beyond fp16"));
  // Misaligned input (the scalar path of the kernel) gives the same bytes.
  const std::vector<float> y = gradient(1001, seed);
  auto dy = upload(y, 1);
  GREENREDUCE_CUDA_CHECK(
      cudaMemcpy(dy.data() + 1, dy.data(), 4 * y.size(), cudaMemcpyDeviceToDevice));
  std::vector<std::byte> want(codec::fp16{}.max_encoded_bytes(y.size()));
  rng g1(seed);
  codec::fp16{}.encode(y, want, g1);
  gr::cuda::device_buffer<std::byte> o2(want.size());
  gr::cuda::fp16_codec().encode(dy.data() + 1, y.size(), o2.data(), o2.size(), g1, nullptr);
  CHECK(download(o2.data(), o2.size()) == want);
}

TEST_CASE("device top-k with and without error feedback equals the CPU", "[gpu][topk]") {
  const auto seed = gr::test::seed(904);
  for (std::size_t n : lengths) {
    for (const auto& c :
         {codec::topk::ratio(0.01), codec::topk::ratio(0.01).sampled(), codec::topk::count(5),
          codec::topk::ratio(0.2).sampled(), codec::topk::ratio(0.001).sampled()}) {
      INFO("topk n=" << n << " k=" << c.k_of(n) << " seed=" << seed);
      const gr::cuda::topk_codec dev(c);
      std::vector<float> x = gradient(n, seed), r = gradient(n, seed + 7);
      for (std::size_t i = 0; i + 5 < n; i += 5) x[i + 2] = -x[i];  // ties
      const std::size_t cap = c.max_encoded_bytes(n);
      for (bool ef : {false, true}) {
        std::vector<std::byte> want(cap);
        std::vector<float> rc = r;
        rng g(seed);
        const std::size_t wl = ef ? c.encode_with_residual(x, rc, want, g) : c.encode(x, want, g);
        auto dx = upload(x);
        auto dr = upload(r);
        gr::cuda::device_buffer<std::byte> out(cap + 64);
        GREENREDUCE_CUDA_CHECK(cudaMemset(out.data(), 0xA5, out.bytes()));
        const std::size_t gl =
            ef ? dev.encode_with_residual(dx.data(), dr.data(), n, out.data(), cap, g, nullptr)
               : dev.encode(dx.data(), n, out.data(), cap, g, nullptr);
        REQUIRE(gl == wl);
        const auto got = download(out.data(), cap + 64);
        REQUIRE(
            std::equal(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(wl), got.begin()));
        for (std::size_t i = gl; i < got.size(); ++i) REQUIRE(got[i] == std::byte{0xA5});
        if (ef) REQUIRE(download(dr.data(), n) == rc);
        // decode_add of the frame on the device.
        std::vector<float> acc = gradient(n, seed + 3), acc_cpu = acc;
        c.decode_add(std::span<const std::byte>(want.data(), wl), acc_cpu);
        auto dacc = upload(acc);
        dev.decode_add(out.data(), wl, dacc.data(), n, nullptr);
        REQUIRE(download(dacc.data(), n) == acc_cpu);
      }
    }
  }
  // Non-finite e = x + r: named, residual untouched.
  const std::size_t n = 70001;
  std::vector<float> x = gradient(n, seed), r(n, 0.0F);
  r[1234] = INFINITY;
  auto dx = upload(x);
  auto dr = upload(r);
  const codec::topk c = codec::topk::ratio(0.01).sampled();
  gr::cuda::device_buffer<std::byte> out(c.max_encoded_bytes(n));
  rng g(seed);
  CHECK_THROWS_MATCHES(gr::cuda::topk_codec(c).encode_with_residual(
                           dx.data(), dr.data(), n, out.data(), out.size(), g, nullptr),
                       numeric_error, gr::test::what_has("element 1234 of input + residual"));
  CHECK(download(dr.data(), n) == r);
}

TEST_CASE("device codecs at 2^28 elements (when the device has the memory)", "[gpu][large]") {
  const std::size_t n = std::size_t{1} << 28;
  std::size_t free_b = 0, total_b = 0;
  GREENREDUCE_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  // x, three frames, decode and two decode_add outputs: about 30 bytes per element.
  if (free_b < 32 * n) {
    WARN("skipped: " << free_b << " bytes free on the device, the 2^28 case needs " << 32 * n);
    return;
  }
  const auto seed = gr::test::seed(905);
  same_as_cpu(gr::cuda::int8_codec(), n, seed);
  same_as_cpu(gr::cuda::fp16_codec(), n, seed);
  same_as_cpu(gr::cuda::ternary_codec(), n, seed);
}
