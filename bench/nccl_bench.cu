// bench/nccl_bench.cu — the nccl transport of greenreduce-bench (see nccl_bench.hpp).
//
// One process, all local GPUs (cuda::nccl_world). For every size and codec:
// `warmup` untimed and `iters` timed in-place allreduces, each on a fresh
// copy of the inputs (bench/check.hpp's deterministic values), timed by the
// ring's report (host wall clock, streams synchronised). Codec "none" gives
// two rows: the uncompressed ncclAllReduce baseline (algo nccl_allreduce) and
// the device ring carrying fp32 frames (algo nccl_ring). Joules: the NVML
// board counters of all the GPUs over the timed loop divided by the number of
// iterations, when the window was long enough to trust (method "nvml"; it
// includes the device-to-device copy that restores the inputs before each
// iteration and the GPUs' idle power), else the energy model's estimate
// summed over ranks (method "model").
#include "nccl_bench.hpp"

#include <variant>

#include "check.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/cuda/codecs.cuh"
#include "greenreduce/cuda/ring_allreduce.cuh"
#include "greenreduce/energy/nvml.hpp"

namespace greenreduce::bench {

namespace {

struct world_data {
  std::vector<cuda::device_buffer<float>> input, work;
  std::vector<float*> ptrs;
};

world_data make_data(cuda::nccl_world& world, std::size_t n, std::uint64_t seed) {
  world_data d;
  for (auto& t : world.ranks()) {
    GREENREDUCE_CUDA_CHECK(cudaSetDevice(t.device()));
    std::vector<float> x(n);
    fill_input(x, seed, t.rank());
    d.input.emplace_back(n + 1);
    d.work.emplace_back(n + 1);
    if (n > 0)
      GREENREDUCE_CUDA_CHECK(
          cudaMemcpy(d.input.back().data(), x.data(), 4 * n, cudaMemcpyHostToDevice));
    d.ptrs.push_back(d.work.back().data());
  }
  return d;
}

void reset(cuda::nccl_world& world, world_data& d, std::size_t n) {
  for (std::size_t j = 0; j < d.ptrs.size(); ++j) {
    auto& t = world.ranks()[j];
    GREENREDUCE_CUDA_CHECK(cudaSetDevice(t.device()));
    if (n > 0)
      GREENREDUCE_CUDA_CHECK(cudaMemcpyAsync(d.ptrs[j], d.input[j].data(), 4 * n,
                                             cudaMemcpyDeviceToDevice, t.stream()));
    GREENREDUCE_CUDA_CHECK(cudaStreamSynchronize(t.stream()));
  }
}

template <class Codec, class Run>
nccl_bench_row measure(const nccl_bench_config& c, cuda::nccl_world& world,
                       const energy::nvml_meter& meter, std::size_t n, const Codec& host, Run run) {
  world_data d = make_data(world, n, c.seed);
  for (int i = 0; i < c.warmup; ++i) {
    reset(world, d, n);
    run(d.ptrs);
  }
  double seconds = 0, model_j = 0;
  std::vector<report> reps;
  const auto snap = meter.start();
  for (int i = 0; i < c.iters; ++i) {
    reset(world, d, n);
    reps = run(d.ptrs);
    seconds += reps.front().seconds;
    for (const auto& r : reps) model_j += r.energy.total_j();
  }
  const energy::measurement m = meter.stop(snap);
  nccl_bench_row row;
  row.size = 4 * n;
  row.count = n;
  row.np = world.size();
  row.algo = reps.front().algo;
  row.time_us = seconds / c.iters * 1e6;
  row.wire = reps.front().wire_bytes();
  row.raw = reps.front().raw_bytes;
  row.sent = reps.front().bytes_sent;
  row.joules = model_j / c.iters;
  if (m.valid && !m.too_short) {
    row.joules = m.joules / c.iters;
    row.method = "nvml";
  }
  if (c.check) {
    GREENREDUCE_CUDA_CHECK(cudaSetDevice(world.ranks().front().device()));
    std::vector<float> out(n);
    if (n > 0)
      GREENREDUCE_CUDA_CHECK(cudaMemcpy(out.data(), d.ptrs.front(), 4 * n, cudaMemcpyDeviceToHost));
    row.wrong = static_cast<std::int64_t>(count_wrong(host, out, c.seed, world.size(), c.average));
  }
  return row;
}

template <class Dev>
nccl_bench_row ring_row(const nccl_bench_config& c, cuda::nccl_world& world,
                        const energy::nvml_meter& meter, std::size_t n, const Dev& dev) {
  cuda::nccl_ring_options opt;
  opt.seed = c.seed;
  opt.energy = c.energy;
  cuda::nccl_ring_allreduce<Dev> ring(world.ranks(), n, dev, opt);
  const auto op = c.average ? collective::reduce_op::average : collective::reduce_op::sum;
  return measure(c, world, meter, n, dev.host(),
                 [&](std::vector<float*>& p) { return ring.run(p, n, op); });
}

}  // namespace

void run_nccl_bench(const nccl_bench_config& c,
                    const std::function<void(const nccl_bench_row&)>& emit) {
  const std::vector<codec::any_codec> codecs = [&] {
    std::vector<codec::any_codec> v;
    for (const auto& s : c.codec_specs) v.push_back(codec::parse_codec(s));
    return v;
  }();
  for (std::size_t k = 0; k < codecs.size(); ++k)  // before any device work
    std::visit(
        [&](const auto& h) {
          using H = std::decay_t<decltype(h)>;
          if constexpr (!std::is_same_v<H, codec::none> && !std::is_same_v<H, codec::fp16> &&
                        !std::is_same_v<H, codec::bf16> && !std::is_same_v<H, codec::int8> &&
                        !std::is_same_v<H, codec::ternary>)
            throw config_error(detail::str("codec \"", c.codec_specs[k],
                                           "\" is not carried by the nccl transport (dense "
                                           "codecs only: none, fp16, bf16, int8, ternary)"));
        },
        codecs[k]);
  cuda::nccl_world world(c.devices);
  const energy::nvml_meter meter;
  const auto op = c.average ? collective::reduce_op::average : collective::reduce_op::sum;
  for (std::uint64_t size : c.sizes) {
    const std::size_t n = size / 4;
    for (std::size_t k = 0; k < codecs.size(); ++k) {
      auto emit_as = [&](nccl_bench_row row) {
        row.codec = c.codec_specs[k];
        emit(row);
      };
      std::visit(
          [&](const auto& h) {
            using H = std::decay_t<decltype(h)>;
            if constexpr (std::is_same_v<H, codec::none>) {
              emit_as(measure(c, world, meter, n, h, [&](std::vector<float*>& p) {
                return cuda::nccl_allreduce(world.ranks(), p, n, op, c.energy);
              }));
              emit_as(ring_row(c, world, meter, n, cuda::none_codec(h)));
            } else if constexpr (std::is_same_v<H, codec::fp16>) {
              emit_as(ring_row(c, world, meter, n, cuda::fp16_codec(h)));
            } else if constexpr (std::is_same_v<H, codec::bf16>) {
              emit_as(ring_row(c, world, meter, n, cuda::bf16_codec(h)));
            } else if constexpr (std::is_same_v<H, codec::int8>) {
              emit_as(ring_row(c, world, meter, n, cuda::int8_codec(h)));
            } else if constexpr (std::is_same_v<H, codec::ternary>) {
              emit_as(ring_row(c, world, meter, n, cuda::ternary_codec(h)));
            }
          },
          codecs[k]);
    }
  }
}

}  // namespace greenreduce::bench
