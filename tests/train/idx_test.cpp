#include "train/idx.hpp"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using greenreduce::test::what_has;
namespace fs = std::filesystem;

namespace {
struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("gr_idx_" + std::to_string(test::seed(99)) + "_" +
                                        std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
};

std::vector<unsigned char> idx_bytes(std::uint8_t rank, std::vector<std::uint32_t> dims,
                                     const std::vector<unsigned char>& data) {
  std::vector<unsigned char> b = {0, 0, 0x08, rank};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}
void write_raw(const fs::path& p, const std::vector<unsigned char>& b) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                           static_cast<std::streamsize>(b.size()));
}
void write_gz(const fs::path& p, const std::vector<unsigned char>& b) {
  gzFile f = gzopen(p.string().c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
  gzclose(f);
}
}  // namespace

TEST_CASE("read_idx reads plain and gzip files", "[train][idx]") {
  temp_dir t;
  std::vector<unsigned char> pix(2 * 3 * 4);
  for (std::size_t i = 0; i < pix.size(); ++i) pix[i] = static_cast<unsigned char>(i * 10);
  const auto bytes = idx_bytes(3, {2, 3, 4}, pix);
  write_raw(t.path / "a.idx", bytes);
  write_gz(t.path / "a.idx.gz", bytes);
  for (const char* name : {"a.idx", "a.idx.gz"}) {
    auto x = examples::read_idx(t.path / name, 3);
    CHECK(x.dims == std::vector<std::uint32_t>{2, 3, 4});
    CHECK(x.data == pix);
  }
}

TEST_CASE("read_idx rejects every truncation, wrong magic and trailing bytes", "[train][idx]") {
  temp_dir t;
  const auto bytes = idx_bytes(1, {5}, {1, 2, 3, 4, 5});
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    INFO("truncated to " << n);
    write_raw(t.path / "cut", std::vector<unsigned char>(bytes.begin(), bytes.begin() + n));
    CHECK_THROWS_MATCHES(examples::read_idx(t.path / "cut", 1), decode_error, what_has("truncated"));
  }
  auto wrong = bytes;
  wrong[2] = 0x0D;  // float data
  write_raw(t.path / "wrong", wrong);
  CHECK_THROWS_MATCHES(examples::read_idx(t.path / "wrong", 1), decode_error,
                       what_has("IDX magic is 0,0,13,1", "expected 0,0,8,1"));
  CHECK_THROWS_MATCHES(examples::read_idx(t.path / "cut", 3), decode_error, what_has("magic"));
  auto longer = bytes;
  longer.push_back(7);
  write_raw(t.path / "long", longer);
  CHECK_THROWS_MATCHES(examples::read_idx(t.path / "long", 1), decode_error,
                       what_has("trailing bytes"));
  write_raw(t.path / "huge", idx_bytes(3, {60000, 60000, 60000}, {}));
  CHECK_THROWS_MATCHES(examples::read_idx(t.path / "huge", 3), decode_error,
                       what_has("more than"));
  CHECK_THROWS_MATCHES(examples::read_idx(t.path / "absent", 1), config_error,
                       what_has("absent", "does not exist"));
}

TEST_CASE("load_mnist_like pairs images with labels and checks them", "[train][idx]") {
  temp_dir t;
  std::vector<unsigned char> pix(3 * 2 * 2, 255);
  write_gz(t.path / "train-images-idx3-ubyte.gz", idx_bytes(3, {3, 2, 2}, pix));
  write_gz(t.path / "train-labels-idx1-ubyte.gz", idx_bytes(1, {3}, {0, 9, 4}));
  auto d = examples::load_mnist_like(t.path, "train");
  CHECK(d.size() == 3);
  CHECK(d.features() == 4);
  CHECK(d.pixels[5] == 1.0F);
  CHECK(d.labels[1] == 9);
  write_gz(t.path / "t10k-images-idx3-ubyte.gz", idx_bytes(3, {3, 2, 2}, pix));
  write_gz(t.path / "t10k-labels-idx1-ubyte.gz", idx_bytes(1, {2}, {0, 1}));
  CHECK_THROWS_MATCHES(examples::load_mnist_like(t.path, "t10k"), decode_error,
                       what_has("3 images but 2 labels"));
  write_gz(t.path / "t10k-labels-idx1-ubyte.gz", idx_bytes(1, {3}, {0, 10, 1}));
  CHECK_THROWS_MATCHES(examples::load_mnist_like(t.path, "t10k"), decode_error,
                       what_has("label 1 is 10"));
  CHECK_THROWS_MATCHES(examples::load_mnist_like(t.path / "nowhere", "train"), config_error,
                       what_has("train-images-idx3-ubyte", "--data"));
}
