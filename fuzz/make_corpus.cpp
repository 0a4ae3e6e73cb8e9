// Writes the seed corpora of the fuzz targets: valid messages of every kind,
// so that libFuzzer starts from inputs that reach deep into each parser.
//   fuzz_make_corpus fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "codec_specs.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/core/frame.hpp"
#include "greenreduce/core/rng.hpp"
#include "greenreduce/ps/protocol.hpp"
#include "greenreduce/transport/auth.hpp"
#include "greenreduce/transport/store.hpp"
#include "greenreduce/transport/tcp/wire.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
namespace fs = std::filesystem;

namespace {

using bytes = std::vector<std::byte>;

void put(const fs::path& dir, int& k, const bytes& b) {
  fs::create_directories(dir);
  std::ofstream(dir / ("seed-" + std::to_string(k++)), std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

bytes encoded(const gr::codec::any_codec& codec, std::size_t n, std::uint64_t seed) {
  gr::rng g(seed);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i)
    x[i] = static_cast<float>((static_cast<int>((i * 2654435761U + seed) % 2001) - 1000)) / 250.0F;
  return std::visit(
      [&](const auto& c) {
        bytes out(c.max_encoded_bytes(n));
        out.resize(c.encode(x, out, g));
        return out;
      },
      codec);
}

bytes cat(std::initializer_list<bytes> parts) {
  bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

bytes u8(unsigned v) {
  return {static_cast<std::byte>(v)};
}
bytes u16(unsigned v) {
  return {static_cast<std::byte>(v & 0xff), static_cast<std::byte>(v >> 8)};
}
template <std::size_t N>
bytes of(const std::array<std::byte, N>& a) {
  return bytes(a.begin(), a.end());
}
bytes text(std::string_view s) {
  bytes b;
  for (char c : s) b.push_back(static_cast<std::byte>(c));
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path root = argc > 1 ? argv[1] : "fuzz/corpus";
  const auto& specs = gr::fuzz::codec_specs;
  int k = 0;
  for (std::size_t c = 0; c < specs.size(); ++c)  // fuzz_codec: spec byte, n (u16), frame
    for (std::size_t n : {0, 1, 7, 300})
      put(root / "fuzz_codec", k,
          cat({u8(unsigned(c)), u16(unsigned(n)),
               encoded(gr::codec::parse_codec(specs[c]), n, c * 31 + n)}));
  k = 0;
  for (const auto* spec : {"none", "int8", "topk:k=3", "sign"})  // fuzz_frame: mode, frame
    for (unsigned mode : {0U, 8U}) {
      put(root / "fuzz_frame", k, cat({u8(mode), encoded(gr::codec::parse_codec(spec), 100, k)}));
      bytes f = encoded(gr::codec::parse_codec(spec), 33, k);  // with a checksum
      gr::finish_frame(f, gr::parse_frame(f).header.codec, 33, f.size() - gr::frame_header_bytes,
                       true);
      put(root / "fuzz_frame", k, cat({u8(mode), f}));
    }
  k = 0;
  namespace sp = grt::store_protocol;
  const auto key = text("greenreduce/addr/3"), value = text("127.0.0.1:40000");
  put(root / "fuzz_store", k,
      cat({u8(0),
           of(sp::encode_request(
               {sp::op::set, std::uint16_t(key.size()), std::uint32_t(value.size())})),
           key, value}));
  put(root / "fuzz_store", k,
      cat({u8(0), of(sp::encode_request({sp::op::get, std::uint16_t(key.size()), 0})), key}));
  put(root / "fuzz_store", k, cat({u8(1), u8(3), of(grt::tcp_wire::encode_hello({2, 4, 3}))}));
  if constexpr (grt::auth_supported) {
    const grt::peer_auth a("corpus");
    put(root / "fuzz_store", k,
        cat({u8(2), u8(1), of(a.make_challenge(grt::auth_wire::role::mesh, 1))}));
    put(root / "fuzz_store", k,
        cat({u8(2), u8(0),
             of(a.make_challenge(grt::auth_wire::role::store, grt::auth_wire::no_rank))}));
  }
  k = 0;
  const std::vector<std::string> ps_codecs = {"none", "int8", "ternary", "topk:k=4"};
  for (unsigned c = 0; c < 4; ++c) {  // fuzz_ps_request: mode, request
    const std::size_t len = 16 * c + 5;
    const auto frame = encoded(gr::codec::parse_codec(ps_codecs[c]), len, c);
    gr::ps::request_header h;
    h.kind = gr::ps::request_kind::push;
    h.key = c;
    h.step = 7;
    h.length = len;
    h.payload_bytes = frame.size();
    bytes req(gr::ps::request_header_bytes);
    gr::ps::write_request(req, h);
    put(root / "fuzz_ps_request", k, cat({u8(unsigned(2 * (len - 1))), req, frame}));
  }
  {
    gr::ps::request_header h;
    h.kind = gr::ps::request_kind::pull;
    h.length = 100;
    bytes req(gr::ps::request_header_bytes);
    gr::ps::write_request(req, h);
    put(root / "fuzz_ps_request", k, cat({u8(0), req}));
    gr::ps::reply_header r;
    r.kind = gr::ps::request_kind::hello;
    r.length = 4096;
    bytes rep(gr::ps::reply_header_bytes);
    gr::ps::write_reply(rep, r);
    put(root / "fuzz_ps_request", k, cat({u8(1), rep}));
    r.kind = gr::ps::request_kind::pull;
    r.status = gr::ps::reply_status::wrong_length;
    const auto msg = text("key 'w' has 100 elements, the push says 99");
    r.payload_bytes = msg.size();
    gr::ps::write_reply(rep, r);
    put(root / "fuzz_ps_request", k, cat({u8(1), rep, msg}));
  }
  std::printf("seed corpora written under %s\n", root.c_str());
  return 0;
}
