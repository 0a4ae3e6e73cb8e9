// The device ring and the ncclAllReduce baseline over all visible GPUs (one
// process drives them all): results within the codec's error bound of the
// float64 sum (bench/check.hpp), bit-identical on every rank, and reports
// that count the wire bytes. Needs a GPU; skips (exit 77) without one.
#include <catch2/catch.hpp>

#include <vector>

#include "bench/check.hpp"
#include "gpu.hpp"
#include "greenreduce/cuda/codecs.cuh"
#include "greenreduce/cuda/ring_allreduce.cuh"
#include "support/random.hpp"

using namespace greenreduce;
namespace gr = greenreduce;

namespace {

const bool present = gr::test::gpu::skip_without_device();

struct rank_data {
  std::vector<gr::cuda::device_buffer<float>> bufs;
  std::vector<float*> ptrs;
};

rank_data inputs(gr::cuda::nccl_world& world, std::size_t n, std::uint64_t seed) {
  rank_data d;
  for (auto& t : world.ranks()) {
    GREENREDUCE_CUDA_CHECK(cudaSetDevice(t.device()));
    std::vector<float> x(n);
    bench::fill_input(x, seed, t.rank());
    d.bufs.push_back(gr::test::gpu::upload(x));
    d.ptrs.push_back(d.bufs.back().data());
  }
  return d;
}

std::vector<float> result_of(gr::cuda::nccl_world& world, const rank_data& d, std::size_t j,
                             std::size_t n) {
  GREENREDUCE_CUDA_CHECK(cudaSetDevice(world.ranks()[j].device()));
  return gr::test::gpu::download(d.ptrs[j], n);
}

template <class Dev>
void ring_case(gr::cuda::nccl_world& world, const Dev& dev, std::size_t n, collective::reduce_op op,
               std::uint64_t seed) {
  const int p = world.size();
  INFO(dev.name() << " p=" << p << " n=" << n << " op=" << collective::to_string(op)
                  << " seed=" << seed);
  gr::cuda::nccl_ring_allreduce<Dev> ring(world.ranks(), n, dev, gr::cuda::nccl_ring_options{});
  rank_data d = inputs(world, n, seed);
  const auto reps = ring.run(d.ptrs, n, op);
  REQUIRE(reps.size() == static_cast<std::size_t>(p));
  const std::vector<float> first = result_of(world, d, 0, n);
  if (p == 1) {
    std::vector<float> x(n);
    bench::fill_input(x, seed, 0);
    CHECK(first == x);
  }
  CHECK(bench::count_wrong(dev.host(), first, seed, p, op == collective::reduce_op::average) == 0);
  for (std::size_t j = 1; j < reps.size(); ++j) CHECK(result_of(world, d, j, n) == first);
  for (const auto& r : reps) {
    CHECK(r.op == "allreduce");
    CHECK(r.energy.method == energy_method::model);
    if (p > 1 && n > 0) {
      CHECK(r.bytes_sent > 0);
      CHECK(r.bytes_received == r.bytes_sent);  // equal chunk frames in a ring of dense codecs
      CHECK(r.energy.total_j() > 0);
    }
  }
}

}  // namespace

TEST_CASE("nccl ring allreduce of device codecs is within the codec bound on every rank",
          "[gpu][nccl]") {
  gr::cuda::nccl_world world;
  const auto seed = gr::test::seed(911);
  const std::size_t p = static_cast<std::size_t>(world.size());
  for (std::size_t n :
       {std::size_t{0}, std::size_t{1}, p + 1, std::size_t{1000}, std::size_t{70001}}) {
    for (auto op : {collective::reduce_op::sum, collective::reduce_op::average}) {
      ring_case(world, gr::cuda::none_codec(), n, op, seed);
      ring_case(world, gr::cuda::fp16_codec(), n, op, seed);
      ring_case(world, gr::cuda::bf16_codec(), n, op, seed);
      ring_case(world, gr::cuda::int8_codec(), n, op, seed);
      ring_case(world, gr::cuda::int8_codec(codec::int8::stochastic()), n, op, seed);
      ring_case(world, gr::cuda::ternary_codec(), n, op, seed);
    }
  }
}

TEST_CASE("ncclAllReduce baseline sums exactly enough and reports ring bytes", "[gpu][nccl]") {
  gr::cuda::nccl_world world;
  const auto seed = gr::test::seed(912);
  const int p = world.size();
  for (std::size_t n : {std::size_t{1}, std::size_t{4099}}) {
    rank_data d = inputs(world, n, seed);
    const auto reps = gr::cuda::nccl_allreduce(world.ranks(), d.ptrs, n);
    CHECK(bench::count_wrong(codec::none{}, result_of(world, d, 0, n), seed, p, false) == 0);
    for (const auto& r : reps) {
      CHECK(r.algo == "nccl_allreduce");
      if (p > 1) CHECK(r.bytes_sent == r.raw_bytes);
    }
  }
}
