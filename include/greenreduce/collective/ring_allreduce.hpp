// greenreduce/collective/ring_allreduce.hpp — bandwidth-optimal allreduce, optionally compressed.
//
//   transport::inproc_world world(4);                  // or a tcp transport per process
//   auto t = world.rank(r);
//   collective::ring_allreduce<codec::int8, transport::inproc> ring(t, max_count, codec::int8{});
//   report rep = ring.run(grad, collective::reduce_op::average);   // in place
//
// Algorithm (Patarasuk & Yuan, JPDC 2009; Gloo's allreduce_ring_chunked): the
// length-n vector is cut into p chunks (sizes differ by at most one element,
// empty when n < p). Reduce-scatter: in step s = 0..p-2 rank r sends chunk
// (r-s) mod p right and adds chunk (r-s-1) mod p from the left into its data,
// after which it owns the reduced chunk (r+1) mod p. Allgather: the owner
// encodes that chunk once, and each rank forwards the frames it received
// unchanged (no re-encoding), decoding them into its data. Each rank sends
// 2(p-1)/p of the data. Every chunk is cut into segments of
// `segment_bytes` that flow in lockstep — post the receive of segment i+2,
// encode and send segment i, wait for segment i from the left and decode-add
// it — so encoding and decoding overlap the wire.
//
// Compressed: each hop decode-adds the incoming frame and re-encodes the sum
// it forwards (p-1 quantizations in reduce-scatter, one in allgather). The
// owner, too, overwrites its chunk with the decoded frame, so every rank holds
// bit-identical results. With `error_feedback` the owner keeps the residual of
// that one encode per owned chunk (DeepSpeed 1-bit Adam, CGX): e = x + r,
// y = C(e), r = e - decode(y), in the encoder's own pass for entry codecs with
// a fused residual (codec::fused_residual: top-k); it resets when the length
// changes.
// Sparse codecs (codec::sparse_codec) may instead allgather every rank's
// whole-vector frame and sum the p frames in rank order ("allgather_sparse"),
// chosen when the bounds of all ranks' frames, p(p-1) max_encoded_bytes(n),
// are fewer bytes than the ring's 2(p-1) sum of the segment bounds; the choice
// is the same on every rank and is reported in report.algo. The owned-chunk
// error feedback does not apply to that path (there is no owned chunk).
//
// Agreement: before data moves, ranks allgather a 48-byte header (length,
// codec id and config_hash, op, segment size, algorithm, whether the length
// fits the object). Any difference throws mismatch_error on every rank naming
// the field and two ranks that differ; the data is untouched.
// A caller's note (ring_options::note_bytes, run(data, op, note, on_notes))
// rides on the same header: once the header checks pass, and before any data
// moves, on_notes sees every rank's note in rank order (p = 1: its own). A
// mismatch_error it throws leaves the data untouched and the object usable,
// like the ring's own; adaptive_allreduce shares its observations this way
// instead of in a collective of their own (one round trip less per step).
//
// Errors: after agreement, an error leaves `data` as the caller passed it when
// `keep_input` (default: every element is saved before its first write) and
// the message ends "input left unchanged"; without it the message ends "input
// partially reduced (contents unspecified)". Nothing is copied up front; each
// element is saved before its first write. Raw fp32: the reduce-scatter's add
// kernel stores each element it is about to add into (every chunk but chunk
// r, once each), and chunk r, which only the allgather overwrites, is copied
// before the allgather begins. Dense frames: each reduce-scatter segment is
// copied before its decode-add, chunk r after that phase. Entry codecs
// (top-k: decode_entries, validate, encode_with_residual): the reduce-scatter
// logs the old value of each element its sparse adds touch, and the allgather
// keeps every frame and decodes them into the data only after its last
// transfer, so it writes nothing before it succeeded (`average` copies the
// owned chunk before dividing it). An error restores just what was saved,
// which is everything written so far. Only mismatch_error leaves the
// object usable; after any other error it (and the transport) is unusable, and
// the transport is aborted when it offers abort(), so peers fail fast.
//
// Report: bytes_sent/received are the transport counter deltas (agreement
// header included); raw_bytes is what the fp32 ring sends from this rank,
// 4 * (2n - |chunk r+1| - |chunk r+2|) (= 2(p-1)/p * 4n up to chunk rounding;
// 0 for p = 1); memory_bytes/compute_ops sum the codec's encode_work and
// decode_work of every call, plus the saved input when keep_input (dense
// frames: 8 per element copied; entry codecs: 16 per logged entry, 8 per
// element of the owned chunk for average; raw fp32: 4 per element saved in
// the add, 8 per element of chunk r).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/codec/error_feedback.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/collective/allgather.hpp"
#include "greenreduce/core/buffer.hpp"
#include "greenreduce/core/bytes.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/core/rng.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/kernels/copy.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::collective {

enum class reduce_op : std::uint8_t { sum = 0, average = 1 };

constexpr std::string_view to_string(reduce_op op) noexcept {
  return op == reduce_op::sum ? "sum" : op == reduce_op::average ? "average" : "unknown";
}

/// Which allreduce algorithm to use; `automatic` lets the collective choose.
enum class algorithm : std::uint8_t { automatic = 0, ring = 1, allgather_sparse = 2 };

constexpr std::string_view to_string(algorithm a) noexcept {
  switch (a) {
    case algorithm::automatic:
      return "automatic";
    case algorithm::ring:
      return "ring";
    case algorithm::allgather_sparse:
      return "allgather_sparse";
  }
  return "unknown";
}

/// fp32 bytes per pipelined segment when ring_options::segment_bytes is 0.
inline constexpr std::size_t default_segment_bytes = std::size_t{4} << 20;
/// The same for entry codecs (top-k): their frames are a few percent of the
/// segment, so finer pipelining gains little on the wire, while every segment
/// pays a fixed selection cost (a threshold sample of at least 4096 keys, two
/// selections, a frame) and one more lockstep hand-off. Measured on 4 hosts
/// at 1 Gbit/s, 64 MB, top-k 1% sampled + EF: 4 MiB 82-85 ms, 8 MiB 80 ms,
/// 16 MiB 72-74 ms per allreduce.
inline constexpr std::size_t default_entry_segment_bytes = std::size_t{16} << 20;

struct ring_options {
  /// fp32 bytes per pipelined segment (>= 4); 0 (the default) chooses
  /// default_segment_bytes, or default_entry_segment_bytes for entry codecs.
  std::size_t segment_bytes = 0;
  bool error_feedback = false;  ///< residual on the owned chunk's allgather encode
  bool keep_input = true;       ///< save the input so that an error leaves it unchanged
  std::uint64_t seed = 0;       ///< seed of the codec rng (stream = rank)
  algorithm algo = algorithm::automatic;
  /// The model that fills every report's energy estimate; empty means
  /// energy::default_model() (GREENREDUCE_ENERGY_* of the process).
  std::optional<energy::model> energy;
  /// Called on every report after the estimate, e.g. to add a meter's reading.
  std::function<void(report&)> annotate;
  /// Bytes of the caller's note carried by every agreement header (see
  /// run(data, op, note, on_notes)); the same on every rank, at most max_note_bytes.
  std::size_t note_bytes = 0;
};

/// The largest ring_options::note_bytes.
inline constexpr std::size_t max_note_bytes = 4096;

/// Every rank's note of one agreement, in rank order.
using note_handler = std::function<void(std::span<const std::span<const std::byte>>)>;

namespace ring_detail {

struct piece {
  std::size_t offset = 0;
  std::size_t count = 0;
};

/// Chunk c of n elements over p ranks: the first n % p chunks get one more.
constexpr piece chunk(std::size_t n, int p, int c) noexcept {
  const auto up = static_cast<std::size_t>(p);
  const auto uc = static_cast<std::size_t>(c);
  const std::size_t base = n / up;
  const std::size_t rem = n % up;
  return {uc * base + std::min(uc, rem), base + (uc < rem ? 1 : 0)};
}

constexpr int mod(int a, int p) noexcept {
  return ((a % p) + p) % p;
}

inline constexpr std::uint32_t agree_magic = 0x52415247;  // "GRAR"
inline constexpr std::size_t agree_bytes = 48;

struct agreement {
  std::uint64_t length = 0;
  std::uint64_t config_hash = 0;
  std::uint64_t segment_elems = 0;
  std::uint64_t capacity = 0;
  std::uint8_t codec = 0;
  std::uint8_t op = 0;
  std::uint8_t algo = 0;
};

inline void write(std::span<std::byte> o, const agreement& a) {
  std::fill(o.begin(), o.end(), std::byte{0});
  store_le<std::uint32_t>(o.data(), agree_magic);
  store_le<std::uint8_t>(o.data() + 4, a.codec);
  store_le<std::uint8_t>(o.data() + 5, a.op);
  store_le<std::uint8_t>(o.data() + 6, a.algo);
  store_le<std::uint64_t>(o.data() + 8, a.length);
  store_le<std::uint64_t>(o.data() + 16, a.config_hash);
  store_le<std::uint64_t>(o.data() + 24, a.segment_elems);
  store_le<std::uint64_t>(o.data() + 32, a.capacity);
}

inline agreement read(std::span<const std::byte> in, int from) {
  if (in.size() != agree_bytes || load_le<std::uint32_t>(in.data()) != agree_magic)
    throw peer_error(detail::str("ring_allreduce agreement header from rank ", from, " has ",
                                 in.size(), " bytes or a bad magic (not a ring_allreduce peer?)"));
  agreement a;
  a.codec = load_le<std::uint8_t>(in.data() + 4);
  a.op = load_le<std::uint8_t>(in.data() + 5);
  a.algo = load_le<std::uint8_t>(in.data() + 6);
  a.length = load_le<std::uint64_t>(in.data() + 8);
  a.config_hash = load_le<std::uint64_t>(in.data() + 16);
  a.segment_elems = load_le<std::uint64_t>(in.data() + 24);
  a.capacity = load_le<std::uint64_t>(in.data() + 32);
  return a;
}

/// A codec that can hand its decoded entries to a callback (top-k): the ring
/// then decodes sparsely in place and keeps an undo log instead of a copy.
struct entry_sink {
  void operator()(std::size_t /*index*/, float /*value*/) const noexcept {}
};
template <class C>
concept entry_codec = requires(const C& c, std::span<const std::byte> frame, std::size_t n) {
  c.decode_entries(frame, n, entry_sink{});
  c.validate(frame, n);
};

/// Entry codecs with a fused residual keep every allgather frame and decode
/// them into the data only once the allgather has succeeded ("deferred"): an
/// error before that leaves the allgather's chunks as they were.
template <class C>
concept deferred_codec = entry_codec<C> && codec::fused_residual<C>;

/// Rethrows `e` with `suffix` appended to its message, keeping its type.
[[noreturn]] inline void rethrow_with(const std::exception_ptr& e, const std::string& suffix) {
  auto body = [](const error& x) {
    const std::string w = x.what();
    const auto k = w.find(": ");
    return k == std::string::npos ? w : w.substr(k + 2);
  };
  try {
    std::rethrow_exception(e);
  } catch (const mismatch_error& x) {
    throw mismatch_error(body(x) + suffix);
  } catch (const timeout_error& x) {
    throw timeout_error(body(x) + suffix);
  } catch (const peer_error& x) {
    throw peer_error(body(x) + suffix);
  } catch (const decode_error& x) {
    throw decode_error(body(x) + suffix);
  } catch (const numeric_error& x) {
    throw numeric_error(body(x) + suffix);
  } catch (const config_error& x) {
    throw config_error(body(x) + suffix);
  }
}

}  // namespace ring_detail

template <codec::codec Codec, transport::transport Transport>
class ring_allreduce {
 public:
  /// Prepares every buffer for vectors of up to `max_count` elements.
  ring_allreduce(Transport& t, std::size_t max_count, Codec c = Codec(), ring_options opts = {})
      : t_(t),
        codec_(std::move(c)),
        opts_(std::move(opts)),
        model_(opts_.energy ? *opts_.energy : energy::default_model()),
        p_(t.size()),
        r_(t.rank()),
        max_count_(max_count),
        agree_ag_(t, ring_detail::agree_bytes + std::min(opts_.note_bytes, max_note_bytes)),
        rng_(opts_.seed, static_cast<std::uint64_t>(t.rank())) {
    if (opts_.note_bytes > max_note_bytes)
      throw config_error(detail::str("ring_allreduce note_bytes must be <= ", max_note_bytes,
                                     ", got ", opts_.note_bytes));
    agree_out_.resize(ring_detail::agree_bytes + opts_.note_bytes);
    if (opts_.segment_bytes != 0 && opts_.segment_bytes < sizeof(float))
      throw config_error(
          detail::str("ring_allreduce segment_bytes must be >= 4 (or 0: automatic), got ",
                      opts_.segment_bytes));
    if (opts_.algo == algorithm::allgather_sparse && !codec::sparse_codec<Codec>)
      throw config_error(
          detail::str("ring_allreduce: algorithm allgather_sparse needs a sparse "
                      "codec, ",
                      codec_.name(), " is dense"));
    const std::size_t segment_bytes = opts_.segment_bytes != 0 ? opts_.segment_bytes
                                      : ring_detail::entry_codec<Codec>
                                          ? default_entry_segment_bytes
                                          : default_segment_bytes;
    seg_ = segment_bytes / sizeof(float);
    const std::size_t max_chunk =
        (max_count + static_cast<std::size_t>(p_) - 1) / static_cast<std::size_t>(p_);
    smax_ = (max_chunk + seg_ - 1) / seg_;
    enc_cap_ = codec_.max_encoded_bytes(std::min(seg_, max_chunk));
    if (p_ > 1 && raw_path) {
      raw_slot_bytes_ = std::min(seg_, max_chunk) * sizeof(float);
      recv_slots_.resize(2 * raw_slot_bytes_);
      if (opts_.keep_input) backup_.resize(max_count);
    } else if (p_ > 1) {
      send_slots_.resize(2 * enc_cap_);
      recv_slots_.resize(2 * enc_cap_);
      // Deferred codecs keep all p * smax_ frames of the allgather.
      ring_k_ =
          ring_detail::deferred_codec<Codec> ? static_cast<std::size_t>(p_) * smax_ : smax_ + 5;
      ag_slots_.resize(ring_k_ * enc_cap_);
      ag_len_.resize(ring_k_);
      if (opts_.keep_input) backup_.resize(max_count);
      if (opts_.error_feedback) {
        residual_.resize(max_chunk);
        if constexpr (!ring_detail::deferred_codec<Codec>)
          scratch_.resize(std::min(seg_, max_chunk));
      }
      if constexpr (codec::sparse_codec<Codec>) {
        if (opts_.algo != algorithm::ring) {
          sparse_frame_.resize(codec_.max_encoded_bytes(max_count));
          sparse_ag_.emplace(t, sparse_frame_.size());
        }
      }
    }
    sends_.reserve(static_cast<std::size_t>(p_) * (smax_ + 1));
    recvs_.reserve(static_cast<std::size_t>(p_) * (smax_ + 1));
    saved_.reserve(static_cast<std::size_t>(p_) * (smax_ + 1) + 1);
  }

  ring_allreduce(const ring_allreduce&) = delete;
  ring_allreduce& operator=(const ring_allreduce&) = delete;

  const Codec& codec() const noexcept { return codec_; }
  std::size_t max_count() const noexcept { return max_count_; }
  std::size_t segment_elements() const noexcept { return seg_; }

  /// The algorithm run(data of length n) will use: the same on every rank.
  algorithm algorithm_for(std::size_t n) const {
    if constexpr (codec::sparse_codec<Codec>) {
      if (opts_.algo != algorithm::automatic) return opts_.algo;
      if (p_ < 2 || n == 0) return algorithm::ring;
      const auto up = static_cast<std::uint64_t>(p_);
      std::uint64_t ring_bytes = 0;  // all ranks, both phases
      for (int c = 0; c < p_; ++c) {
        const auto ch = ring_detail::chunk(n, p_, c);
        for (std::size_t off = 0; off < ch.count; off += seg_)
          ring_bytes += codec_.max_encoded_bytes(std::min(seg_, ch.count - off));
      }
      ring_bytes *= 2 * (up - 1);
      const std::uint64_t ag_bytes = up * (up - 1) * codec_.max_encoded_bytes(n);
      return ag_bytes < ring_bytes ? algorithm::allgather_sparse : algorithm::ring;
    } else {
      (void)n;
      return algorithm::ring;
    }
  }

  /// What the fp32 ring sends from this rank for n elements (see the header comment).
  std::uint64_t raw_bytes(std::size_t n) const noexcept {
    if (p_ < 2) return 0;
    const std::size_t skip = ring_detail::chunk(n, p_, ring_detail::mod(r_ + 1, p_)).count +
                             ring_detail::chunk(n, p_, ring_detail::mod(r_ + 2, p_)).count;
    return sizeof(float) * (2 * static_cast<std::uint64_t>(n) - skip);
  }

  /// The error-feedback residual this rank holds: one value per element of the
  /// chunk it owns, chunk (rank + 1) mod p of the length of the last ring run,
  /// in the result's units (after averaging). Empty without error_feedback,
  /// before the first such run, and for exact fp32 (nothing to feed back).
  std::span<const float> residual() const noexcept {
    if (!opts_.error_feedback || residual_.empty() || residual_n_ == static_cast<std::size_t>(-1))
      return {};
    const auto own = ring_detail::chunk(residual_n_, p_, ring_detail::mod(r_ + 1, p_));
    return std::span<const float>(residual_).first(own.count);
  }
  /// Element offset of residual() in the vector of the last ring run.
  std::size_t residual_offset() const noexcept {
    if (residual_n_ == static_cast<std::size_t>(-1)) return 0;
    return ring_detail::chunk(residual_n_, p_, ring_detail::mod(r_ + 1, p_)).offset;
  }
  /// Forgets the residual (e.g. after handing it to another collective).
  void clear_residual() noexcept { std::fill(residual_.begin(), residual_.end(), 0.0F); }

  /// Reduces `data` over all ranks in place. Every rank passes the same length and op.
  /// With note_bytes > 0 the agreement carries a note of zeros.
  report run(std::span<float> data, reduce_op op = reduce_op::sum) {
    return run(data, op, {}, nullptr);
  }

  /// run() whose agreement header also carries `note` (exactly
  /// ring_options::note_bytes bytes; empty = zeros). After the header checks
  /// pass and before any data moves, `on_notes` (may be empty) gets every
  /// rank's note in rank order. If it throws mismatch_error, so does run():
  /// data untouched, the object usable; any other error it throws leaves the
  /// data untouched too, but the object unusable (as a failed agreement does).
  report run(std::span<float> data, reduce_op op, std::span<const std::byte> note,
             const note_handler& on_notes) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!broken_.empty())
      throw peer_error(detail::str("ring_allreduce on rank ", r_,
                                   ": unusable after an earlier error (", broken_,
                                   "); input left unchanged"));
    if (op != reduce_op::sum && op != reduce_op::average)
      throw config_error(detail::str("ring_allreduce: unknown reduce_op ",
                                     static_cast<unsigned>(op), "; input left unchanged"));
    if (!note.empty() && note.size() != opts_.note_bytes)
      throw config_error(detail::str("ring_allreduce: a note of ", note.size(),
                                     " bytes, but note_bytes is ", opts_.note_bytes,
                                     "; input left unchanged"));
    const std::uint64_t sent0 = t_.bytes_sent();
    const std::uint64_t recv0 = t_.bytes_received();
    const std::size_t n = data.size();
    report rep;
    rep.op = "allreduce";
    rep.codec = std::string(codec_.name());
    const algorithm algo = algorithm_for(n);
    rep.algo = std::string(to_string(algo));
    rep.raw_bytes = raw_bytes(n);
    codec::work w;
    bool modified = false;
    try {
      if (p_ == 1 && on_notes) {
        const std::span<const std::byte> one[] = {note};
        on_notes(one);
      }
      if (p_ > 1) {
        agree(n, op, algo, note, on_notes);
        if (n > 0) {
          saved_pieces_ = 0;
          saved_all_ = false;
          saved_.clear();
          undo_idx_.clear();
          undo_old_.clear();
          modified = true;
          if (algo == algorithm::ring)
            run_ring(data, op, w);
          else
            run_sparse(data, op, w);
        }
      } else if (n > max_count_) {
        throw config_error(length_too_long(n));
      }
    } catch (const mismatch_error&) {
      throw;  // before any data moved; the object stays usable
    } catch (...) {
      auto e = std::current_exception();
      std::string suffix = "; input left unchanged";
      if (modified) {
        if (opts_.keep_input)
          restore(data);
        else
          suffix = "; input partially reduced (contents unspecified)";
      }
      if (modified || !is_local_config_error(e)) {
        broken_ = "an earlier run failed";
        if constexpr (requires(Transport & x) { x.abort(); }) t_.abort();
      }
      ring_detail::rethrow_with(e, suffix);
      throw;  // not a greenreduce::error: rethrown unchanged
    }
    rep.bytes_sent = t_.bytes_sent() - sent0;
    rep.bytes_received = t_.bytes_received() - recv0;
    rep.memory_bytes = w.memory_bytes;
    rep.compute_ops = w.ops;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    model_.annotate(rep);
    if (opts_.annotate) opts_.annotate(rep);
    return rep;
  }

 private:
  using piece = ring_detail::piece;

  static bool is_local_config_error(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const config_error&) {
      return true;
    } catch (...) {
      return false;
    }
  }

  std::string length_too_long(std::size_t n) const {
    return detail::str("ring_allreduce on rank ", r_, ": length ", n, " exceeds the max_count ",
                       max_count_, " it was built for");
  }

  // Puts back what keep_input saved: everything; or (dense frames, during the
  // reduce-scatter) the first saved_pieces_ receives of that phase, which are
  // still listed in recvs_ and are the only elements written so far; or
  // (entry codecs) the pieces saved before a decode overwrote them, then the
  // undo log of the reduce-scatter's sparse adds (each index at most once),
  // which also corrects those saved pieces.
  void restore(std::span<float> data) {
    if (saved_all_) {
      std::memcpy(data.data(), backup_.data(), data.size() * sizeof(float));
      return;
    }
    for (std::size_t j = 0; j < saved_pieces_; ++j)
      std::memcpy(data.data() + recvs_[j].offset, backup_.data() + recvs_[j].offset,
                  recvs_[j].count * sizeof(float));
    for (const piece& pc : saved_)
      std::memcpy(data.data() + pc.offset, backup_.data() + pc.offset, pc.count * sizeof(float));
    for (std::size_t j = 0; j < undo_idx_.size(); ++j) data[undo_idx_[j]] = undo_old_[j];
  }

  // Decodes `msg` over data[pc] (a full overwrite), saving that piece first
  // when `save` and keep_input ask for it. Entry codecs zero the piece in the
  // same pass as the save, after the frame was validated, then scatter; bit
  // for bit what codec.decode writes.
  void decode_over(std::span<const std::byte> msg, std::span<float> data, const piece& pc,
                   bool save, codec::work& w) {
    auto x = data.subspan(pc.offset, pc.count);
    save = save && opts_.keep_input && !saved_all_;
    if (save) {
      saved_.push_back(pc);
      w.memory_bytes += 8 * pc.count;
    }
    if constexpr (ring_detail::entry_codec<Codec>) {
      bool cleared = false;
      auto clear = [&] {
        if (save)
          kernels::save_and_zero(x, backup_.data() + pc.offset);
        else
          std::fill(x.begin(), x.end(), 0.0F);
        cleared = true;
      };
      try {
        codec_.decode_entries(msg, pc.count, [&](std::size_t i, float v) {
          if (!cleared) clear();
          x[i] = v;
        });
      } catch (...) {
        if (save) saved_.pop_back();  // validation failed: nothing written
        throw;
      }
      if (!cleared) clear();
    } else {
      if (save) kernels::copy_streaming(x.data(), backup_.data() + pc.offset, pc.count);
      codec_.decode(msg, x);
    }
  }

  // ------------------------------------------------------------------ agreement
  void agree(std::size_t n, reduce_op op, algorithm algo, std::span<const std::byte> note,
             const note_handler& on_notes) {
    ring_detail::agreement mine;
    mine.length = n;
    mine.config_hash = codec_.config_hash();
    mine.codec = static_cast<std::uint8_t>(codec_.id());
    mine.op = static_cast<std::uint8_t>(op);
    mine.algo = static_cast<std::uint8_t>(algo);
    mine.segment_elems = seg_;
    mine.capacity = max_count_;
    const std::size_t hb = ring_detail::agree_bytes;
    const auto out = std::span<std::byte>(agree_out_);
    ring_detail::write(out.first(hb), mine);
    if (note.empty())
      std::fill(out.begin() + static_cast<std::ptrdiff_t>(hb), out.end(), std::byte{0});
    else
      std::copy(note.begin(), note.end(), out.begin() + static_cast<std::ptrdiff_t>(hb));
    const auto all = agree_ag_.run(out);
    std::vector<ring_detail::agreement> a;
    a.reserve(all.size());
    notes_.clear();
    for (int q = 0; q < p_; ++q) {
      const auto m = all[static_cast<std::size_t>(q)];
      if (m.size() != out.size())
        throw peer_error(detail::str("ring_allreduce agreement header from rank ", q, " has ",
                                     m.size(), " bytes, expected ", out.size(), " (header ", hb,
                                     " + note ", opts_.note_bytes,
                                     "; not a ring_allreduce peer, or a different note_bytes?)"));
      a.push_back(ring_detail::read(m.first(hb), q));
      notes_.push_back(m.subspan(hb));
    }

    for (int q = 0; q < p_; ++q)
      if (a[static_cast<std::size_t>(q)].length > a[static_cast<std::size_t>(q)].capacity) {
        if (q == r_) throw config_error(length_too_long(n));
        throw mismatch_error(
            detail::str("ring_allreduce on rank ", r_, ": rank ", q, " cannot take length ",
                        a[static_cast<std::size_t>(q)].length, " (built for ",
                        a[static_cast<std::size_t>(q)].capacity, "); input left unchanged"));
      }
    auto differ = [&](const char* what, auto field, auto show) {
      for (int q = 1; q < p_; ++q)
        if (field(a[static_cast<std::size_t>(q)]) != field(a[0]))
          throw mismatch_error(detail::str("ring_allreduce on rank ", r_, ": ranks disagree on ",
                                           what, ": rank 0 has ", show(a[0]), " but rank ", q,
                                           " has ", show(a[static_cast<std::size_t>(q)]),
                                           "; input left unchanged"));
    };
    differ(
        "the length", [](const auto& x) { return x.length; },
        [](const auto& x) { return x.length; });
    differ(
        "the codec", [](const auto& x) { return std::pair(x.codec, x.config_hash); },
        [](const auto& x) {
          return detail::str(codec_name(static_cast<codec_id>(x.codec)), " (config 0x", std::hex,
                             x.config_hash, ")");
        });
    differ(
        "the op", [](const auto& x) { return x.op; },
        [](const auto& x) { return to_string(static_cast<reduce_op>(x.op)); });
    differ(
        "the segment size", [](const auto& x) { return x.segment_elems; },
        [](const auto& x) { return detail::str(x.segment_elems, " elements"); });
    differ(
        "the algorithm", [](const auto& x) { return x.algo; },
        [](const auto& x) { return to_string(static_cast<algorithm>(x.algo)); });
    if (on_notes) on_notes(notes_);
  }

  // ------------------------------------------------------------------ the ring
  std::size_t segments(std::size_t count) const noexcept { return (count + seg_ - 1) / seg_; }

  void add_pieces(std::vector<piece>& v, piece ch) const {
    for (std::size_t off = 0; off < ch.count; off += seg_)
      v.push_back({ch.offset + off, std::min(seg_, ch.count - off)});
  }

  std::span<std::byte> slot(byte_buffer& b, std::size_t i) {
    return std::span<std::byte>(b).subspan(i * enc_cap_, enc_cap_);
  }

  // Moves nsend messages right and nrecv left in lockstep. Send i may depend on
  // receive i - lag (lag >= 1: consumed in an earlier iteration; lag = 0: this
  // one). At most two sends and two receives are in flight; `produce(i)` runs
  // after send i-2 completed, so it may reuse that send's buffer.
  template <class Produce, class RecvBuf, class Consume>
  void pipeline(std::size_t nsend, std::size_t nrecv, std::size_t lag, Produce produce,
                RecvBuf recv_buf, Consume consume) {
    const int right = ring_detail::mod(r_ + 1, p_);
    const int left = ring_detail::mod(r_ - 1, p_);
    std::optional<typename Transport::recv_request> rq[2];
    std::optional<typename Transport::send_request> sq[2];
    auto post = [&](std::size_t j) {
      if (j < nrecv) rq[j % 2].emplace(t_.irecv(left, recv_buf(j)));
    };
    auto send = [&](std::size_t i) {
      auto& s = sq[i % 2];
      if (s) {
        t_.wait(*s);
        s.reset();
      }
      s.emplace(t_.isend(right, produce(i)));
    };
    post(0);
    post(1);
    const std::size_t steps = std::max(nsend, nrecv);
    for (std::size_t i = 0; i < steps; ++i) {
      const bool early = i < nsend && lag >= 1;
      if (early) send(i);
      if (i < nrecv) {
        const std::size_t len = t_.wait(*rq[i % 2]);
        rq[i % 2].reset();
        consume(i, std::span<const std::byte>(recv_buf(i).first(len)));
        post(i + 2);
      }
      if (i < nsend && !early) send(i);
    }
    for (auto& s : sq)
      if (s) t_.wait(*s);
  }

  // fp32 on a little-endian host: messages are the data's own bytes, sent from
  // and (in the allgather) received into `data`, with no frame and no copy.
  static constexpr bool raw_path =
      std::is_same_v<Codec, codec::none> && std::endian::native == std::endian::little;

  void expect_length(std::size_t got, std::size_t count) const {
    if (got != count * sizeof(float))
      throw peer_error(detail::str("ring_allreduce on rank ", r_, ": fp32 segment from rank ",
                                   ring_detail::mod(r_ - 1, p_), " has ", got, " bytes, expected ",
                                   count * sizeof(float)));
  }

  void run_ring_raw(std::span<float> data, reduce_op op, codec::work& w) {
    const std::size_t n = data.size();
    auto bytes = [&](const piece& pc) {
      return std::as_writable_bytes(data.subspan(pc.offset, pc.count));
    };
    sends_.clear();
    recvs_.clear();
    for (int s = 0; s + 1 < p_; ++s) {
      add_pieces(sends_, ring_detail::chunk(n, p_, ring_detail::mod(r_ - s, p_)));
      add_pieces(recvs_, ring_detail::chunk(n, p_, ring_detail::mod(r_ - s - 1, p_)));
    }
    pipeline(
        sends_.size(), recvs_.size(), segments(ring_detail::chunk(n, p_, r_).count),
        [&](std::size_t i) { return std::span<const std::byte>(bytes(sends_[i])); },
        [&](std::size_t j) {
          return std::span<std::byte>(recv_slots_)
              .subspan((j % 2) * raw_slot_bytes_, raw_slot_bytes_);
        },
        [&](std::size_t j, std::span<const std::byte> msg) {
          expect_length(msg.size(), recvs_[j].count);
          const piece& pc = recvs_[j];
          w += codec_.decode_work(pc.count);
          if (opts_.keep_input) {
            kernels::add_from_le_saving(msg.data(), data.subspan(pc.offset, pc.count),
                                        backup_.data() + pc.offset);
            saved_pieces_ = j + 1;
            w.memory_bytes += 4 * pc.count;
          } else {
            kernels::add_from_le(msg.data(), data.subspan(pc.offset, pc.count));
          }
        });
    if (opts_.keep_input) {  // the one chunk the reduce-scatter never wrote
      const piece mine = ring_detail::chunk(n, p_, r_);
      kernels::copy_streaming(data.data() + mine.offset, backup_.data() + mine.offset, mine.count);
      w.memory_bytes += 8 * mine.count;
      saved_all_ = true;
    }
    const piece owned = ring_detail::chunk(n, p_, ring_detail::mod(r_ + 1, p_));
    if (op == reduce_op::average) {
      const float fp = static_cast<float>(p_);
      for (float& x : data.subspan(owned.offset, owned.count)) x /= fp;
      w += codec::work{8 * owned.count, owned.count};
    }
    sends_.clear();
    recvs_.clear();
    for (int s = 0; s + 1 < p_; ++s) {
      if (s == 0) add_pieces(sends_, owned);
      add_pieces(recvs_, ring_detail::chunk(n, p_, ring_detail::mod(r_ - s, p_)));
    }
    const std::size_t lag = sends_.size();
    const std::size_t nsend =
        recvs_.size() - segments(ring_detail::chunk(n, p_, ring_detail::mod(r_ + 2, p_)).count) +
        lag;
    pipeline(
        nsend, recvs_.size(), lag,
        [&](std::size_t i) {
          return std::span<const std::byte>(bytes(i < lag ? sends_[i] : recvs_[i - lag]));
        },
        [&](std::size_t j) { return bytes(recvs_[j]); },
        [&](std::size_t j, std::span<const std::byte> msg) {
          expect_length(msg.size(), recvs_[j].count);
        });
  }

  void run_ring(std::span<float> data, reduce_op op, codec::work& w) {
    if constexpr (raw_path) {
      run_ring_raw(data, op, w);
      return;
    }
    const std::size_t n = data.size();
    auto sub = [&](const piece& pc) { return data.subspan(pc.offset, pc.count); };

    // Reduce-scatter.
    sends_.clear();
    recvs_.clear();
    for (int s = 0; s + 1 < p_; ++s) {
      add_pieces(sends_, ring_detail::chunk(n, p_, ring_detail::mod(r_ - s, p_)));
      add_pieces(recvs_, ring_detail::chunk(n, p_, ring_detail::mod(r_ - s - 1, p_)));
    }
    pipeline(
        sends_.size(), recvs_.size(), segments(ring_detail::chunk(n, p_, r_).count),
        [&](std::size_t i) {
          const piece& pc = sends_[i];
          auto out = slot(send_slots_, i % 2);
          w += codec_.encode_work(pc.count);
          return std::span<const std::byte>(out.first(codec_.encode(sub(pc), out, rng_)));
        },
        [&](std::size_t j) { return slot(recv_slots_, j % 2); },
        [&](std::size_t j, std::span<const std::byte> msg) {
          const piece& pc = recvs_[j];
          w += codec_.decode_work(pc.count);
          if (!opts_.keep_input) {
            codec_.decode_add(msg, sub(pc));
          } else if constexpr (ring_detail::entry_codec<Codec>) {
            // decode_add, logging each old value: no copy of the chunk.
            const std::size_t base = undo_idx_.size();
            ent_val_.clear();
            codec_.decode_entries(msg, pc.count, [&](std::size_t i, float v) {
              undo_idx_.push_back(pc.offset + i);
              ent_val_.push_back(v);
            });
            const std::size_t m = undo_idx_.size() - base;
            undo_old_.resize(base + m);
            kernels::scatter_add_saving_prefetched(undo_idx_.data() + base, ent_val_.data(), m,
                                                   data.data(), undo_old_.data() + base);
            w.memory_bytes += 16 * m;
          } else {
            kernels::copy_streaming(data.data() + pc.offset, backup_.data() + pc.offset, pc.count);
            saved_pieces_ = j + 1;
            w.memory_bytes += 8 * pc.count;
            codec_.decode_add(msg, sub(pc));
          }
        });

    // The reduced chunk this rank owns.
    const int own = ring_detail::mod(r_ + 1, p_);
    const piece owned = ring_detail::chunk(n, p_, own);
    bool owned_saved = false;
    if (opts_.keep_input) {
      if constexpr (ring_detail::entry_codec<Codec>) {
        if (op == reduce_op::average) {  // the division below writes it
          kernels::copy_streaming(data.data() + owned.offset, backup_.data() + owned.offset,
                                  owned.count);
          saved_.push_back(owned);
          w.memory_bytes += 8 * owned.count;
          owned_saved = true;
        }
      } else {  // the one chunk the reduce-scatter never wrote
        const piece mine = ring_detail::chunk(n, p_, r_);
        kernels::copy_streaming(data.data() + mine.offset, backup_.data() + mine.offset,
                                mine.count);
        w.memory_bytes += 8 * mine.count;
        saved_all_ = true;
      }
    }
    if (op == reduce_op::average) {
      const float fp = static_cast<float>(p_);
      for (float& x : sub(owned)) x /= fp;
      w.ops += owned.count;
      w.memory_bytes += 8 * owned.count;
    }
    if (opts_.error_feedback && residual_n_ != n) {
      std::fill(residual_.begin(), residual_.end(), 0.0F);
      residual_n_ = n;
    }

    // Allgather: encode owned segments once, forward received frames unchanged.
    sends_.clear();
    recvs_.clear();
    for (int s = 0; s + 1 < p_; ++s) {
      if (s == 0) add_pieces(sends_, owned);
      add_pieces(recvs_, ring_detail::chunk(n, p_, ring_detail::mod(r_ - s, p_)));
    }
    const std::size_t lag = sends_.size();
    // Sends after the owned ones forward receives 0..(total - lag - 1): every
    // chunk but the one the right neighbour owns.
    const std::size_t forward =
        recvs_.size() - segments(ring_detail::chunk(n, p_, ring_detail::mod(r_ + 2, p_)).count);
    const std::size_t nsend = lag + forward;
    if constexpr (ring_detail::deferred_codec<Codec>) {
      run_allgather_deferred(data, owned, lag, nsend, w);
      return;
    }
    pipeline(
        nsend, recvs_.size(), lag,
        [&](std::size_t i) -> std::span<const std::byte> {
          if (i >= lag) {
            const std::size_t k = (i - lag) % ring_k_;
            return slot(ag_slots_, k).first(ag_len_[k]);
          }
          const piece& pc = sends_[i];
          auto out = slot(send_slots_, i % 2);
          auto x = sub(pc);
          std::size_t len = 0;
          if (opts_.error_feedback) {
            // (Entry codecs with a fused residual, top-k, take run_allgather_deferred.)
            auto res = std::span<float>(residual_).subspan(pc.offset - owned.offset, pc.count);
            auto e = std::span<float>(scratch_).first(pc.count);
            for (std::size_t k = 0; k < pc.count; ++k) e[k] = x[k] + res[k];
            len = codec_.encode(e, out, rng_);
            decode_over(out.first(len), data, pc, !owned_saved, w);
            for (std::size_t k = 0; k < pc.count; ++k) res[k] = e[k] - x[k];
            w += codec::work{20 * pc.count, 2 * pc.count};
            w += codec_.decode_work(pc.count);
          } else {
            len = codec_.encode(x, out, rng_);
            if constexpr (!std::is_same_v<Codec, codec::none>) {  // none is exact
              decode_over(out.first(len), data, pc, !owned_saved, w);
              w += codec_.decode_work(pc.count);
            }
          }
          w += codec_.encode_work(pc.count);
          return out.first(len);
        },
        [&](std::size_t j) { return slot(ag_slots_, j % ring_k_); },
        [&](std::size_t j, std::span<const std::byte> msg) {
          ag_len_[j % ring_k_] = msg.size();
          w += codec_.decode_work(recvs_[j].count);
          decode_over(msg, data, recvs_[j], true, w);
        });
  }

  // The allgather of a deferred codec (sends_ = the owned segments, recvs_ =
  // the segments to receive): slot i < lag holds the frame of owned segment
  // i, slot lag + j receive j. Received frames are validated on arrival and
  // forwarded unchanged; only after the last transfer is every frame decoded
  // into `data` (the owner's too: every rank holds the same values). So an
  // error in the allgather has not written any of its chunks.
  void run_allgather_deferred(std::span<float> data, const piece& owned, std::size_t lag,
                              std::size_t nsend, codec::work& w) {
    if constexpr (ring_detail::deferred_codec<Codec>) {
      auto frame = [&](std::size_t k) {
        return std::span<const std::byte>(slot(ag_slots_, k).first(ag_len_[k]));
      };
      pipeline(
          nsend, recvs_.size(), lag,
          [&](std::size_t i) -> std::span<const std::byte> {
            if (i >= lag) return frame(i);  // forwards receive i - lag
            const piece& pc = sends_[i];
            auto out = slot(ag_slots_, i);
            auto x = data.subspan(pc.offset, pc.count);
            if (opts_.error_feedback) {
              // r = e with the sent entries zeroed, in the encoder's own pass:
              // what e - decode(y) gives, bit for bit, for top-k.
              auto res = std::span<float>(residual_).subspan(pc.offset - owned.offset, pc.count);
              ag_len_[i] = codec_.encode_with_residual(x, res, out, rng_);
            } else {
              ag_len_[i] = codec_.encode(x, out, rng_);
            }
            w += codec_.encode_work(pc.count);
            return frame(i);
          },
          [&](std::size_t j) { return slot(ag_slots_, lag + j); },
          [&](std::size_t j, std::span<const std::byte> msg) {
            ag_len_[lag + j] = msg.size();
            codec_.validate(msg, recvs_[j].count);
          });
      // codec.decode's result (zeros, then the entries), in one sequential
      // pass with streaming stores.
      auto decode = [&](std::span<const std::byte> f, const piece& pc) {
        ent_idx_.clear();
        ent_val_.clear();
        auto keep = [&](std::size_t i, float v) {
          ent_idx_.push_back(i);
          ent_val_.push_back(v);
        };
        // Every frame here was validated on arrival or written by this rank.
        if constexpr (requires { codec_.decode_validated_entries(f, pc.count, keep); })
          codec_.decode_validated_entries(f, pc.count, keep);
        else
          codec_.decode_entries(f, pc.count, keep);
        kernels::expand_streaming(ent_idx_.data(), ent_val_.data(), ent_idx_.size(),
                                  data.subspan(pc.offset, pc.count));
        w += codec_.decode_work(pc.count);
        w.memory_bytes += 4 * pc.count;
      };
      for (std::size_t i = 0; i < lag; ++i) decode(frame(i), sends_[i]);
      for (std::size_t j = 0; j < recvs_.size(); ++j) decode(frame(lag + j), recvs_[j]);
    } else {
      (void)data, (void)owned, (void)lag, (void)nsend, (void)w;
    }
  }

  // ------------------------------------------------------------------ sparse allgather
  void run_sparse(std::span<float> data, reduce_op op, codec::work& w) {
    if constexpr (codec::sparse_codec<Codec>) {
      const std::size_t n = data.size();
      const std::size_t len = codec_.encode(data, sparse_frame_, rng_);
      w += codec_.encode_work(n);
      const auto frames = sparse_ag_->run(std::span<const std::byte>(sparse_frame_).first(len));
      // Rank order on every rank: bit-identical sums.
      decode_over(frames[0], data, piece{0, n}, true, w);
      for (int q = 1; q < p_; ++q) codec_.decode_add(frames[static_cast<std::size_t>(q)], data);
      w += codec::work{codec_.decode_work(n).memory_bytes * static_cast<std::uint64_t>(p_),
                       codec_.decode_work(n).ops * static_cast<std::uint64_t>(p_)};
      if (op == reduce_op::average) {
        const float fp = static_cast<float>(p_);
        for (float& x : data) x /= fp;
        w += codec::work{8 * n, n};
      }
    } else {
      (void)data;
      (void)op;
      (void)w;
    }
  }

  Transport& t_;
  Codec codec_;
  ring_options opts_;
  energy::model model_;
  int p_;
  int r_;
  std::size_t max_count_;
  std::size_t seg_ = 1;
  std::size_t smax_ = 0;
  std::size_t enc_cap_ = 0;
  std::size_t ring_k_ = 0;
  std::size_t raw_slot_bytes_ = 0;
  allgather<Transport> agree_ag_;
  std::vector<std::byte> agree_out_;
  std::vector<std::span<const std::byte>> notes_;
  rng rng_;
  byte_buffer send_slots_, recv_slots_, ag_slots_, sparse_frame_;
  std::vector<std::size_t> ag_len_;
  aligned_vector<float> backup_, residual_, scratch_;
  std::size_t residual_n_ = static_cast<std::size_t>(-1);
  std::size_t saved_pieces_ = 0;  // keep_input: reduce-scatter receives saved so far
  bool saved_all_ = false;        // keep_input: the whole input is in backup_
  std::vector<piece> saved_;      // keep_input: pieces saved in backup_ before a decode
  // keep_input, entry codecs: where the reduce-scatter added, and what was there.
  std::vector<std::uint64_t> undo_idx_;
  std::vector<float> undo_old_;
  std::vector<std::uint64_t> ent_idx_;  // entries of one frame (entry codecs)
  std::vector<float> ent_val_;
  std::optional<allgather<Transport>> sparse_ag_;
  std::vector<piece> sends_, recvs_;
  std::string broken_;
};

}  // namespace greenreduce::collective
