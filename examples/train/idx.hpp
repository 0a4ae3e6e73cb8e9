// examples/train/idx.hpp — reads the IDX files of MNIST and Fashion-MNIST.
//
// IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header
// (two zero bytes, a type code, the number of dimensions, then one u32 per
// dimension) followed by the data. Files may be gzip-compressed, as Debian's
// dataset-fashion-mnist ships them; zlib's gz* functions read both forms.
// Every field is checked: a missing file is a config_error naming it, a wrong
// magic, a dimension that disagrees or a truncated body a decode_error.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fvec.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::examples {

/// One IDX tensor of unsigned bytes: its dimensions and data, row-major.
struct idx_tensor {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;
};

namespace idx_detail {
using greenreduce::detail::str;
struct gz_closer {
  void operator()(gzFile_s* f) const noexcept { gzclose(f); }
};
using gz_ptr = std::unique_ptr<gzFile_s, gz_closer>;

inline void read_exact(gzFile_s* f, void* dst, std::size_t n, const std::string& path,
                       const char* what) {
  auto* p = static_cast<unsigned char*>(dst);
  std::size_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1U << 30));
    const int got = gzread(f, p + done, chunk);
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      throw decode_error(str(path, ": reading ", what, " failed: ", msg ? msg : "zlib error"));
    }
    if (got == 0)
      throw decode_error(str(path, ": truncated ", what, ": expected ", n, " bytes, found ", done));
    done += static_cast<std::size_t>(got);
  }
}
}  // namespace idx_detail

using greenreduce::detail::str;

/// Reads an IDX file of unsigned bytes (type 0x08) with `rank` dimensions.
/// Bounded: refuses more than `max_bytes` of data, whatever the header claims.
inline idx_tensor read_idx(const std::filesystem::path& path, std::uint8_t rank,
                           std::uint64_t max_bytes = 1ULL << 31) {
  const std::string name = path.string();
  if (!std::filesystem::exists(path))
    throw config_error(str("data file ", name, " does not exist"));
  idx_detail::gz_ptr f(gzopen(name.c_str(), "rb"));
  if (!f) throw config_error(str("cannot open data file ", name));
  unsigned char magic[4];
  idx_detail::read_exact(f.get(), magic, 4, name, "IDX magic");
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] != rank)
    throw decode_error(str(name, ": IDX magic is ", unsigned{magic[0]}, ",", unsigned{magic[1]}, ",",
                           unsigned{magic[2]}, ",", unsigned{magic[3]},
                           ", expected 0,0,8,", unsigned{rank}, " (unsigned bytes, ",
                           unsigned{rank}, " dimensions)"));
  idx_tensor t;
  std::uint64_t count = 1;
  for (unsigned d = 0; d < rank; ++d) {
    unsigned char be[4];
    idx_detail::read_exact(f.get(), be, 4, name, "IDX dimension");
    const std::uint32_t dim = (std::uint32_t{be[0]} << 24) | (std::uint32_t{be[1]} << 16) |
                              (std::uint32_t{be[2]} << 8) | std::uint32_t{be[3]};
    t.dims.push_back(dim);
    count *= dim;
    if (count > max_bytes)
      throw decode_error(str(name, ": IDX header declares more than ", max_bytes, " bytes of data"));
  }
  t.data.resize(count);
  idx_detail::read_exact(f.get(), t.data.data(), t.data.size(), name, "IDX data");
  unsigned char extra;
  if (gzread(f.get(), &extra, 1) != 0)
    throw decode_error(str(name, ": trailing bytes after ", count, " bytes of IDX data"));
  return t;
}

/// A labelled image set: pixels scaled to [0, 1], one row per image.
struct dataset {
  std::size_t rows = 0, cols = 0;   ///< image height and width
  fvec pixels;        ///< size() * rows * cols
  std::vector<std::uint8_t> labels; ///< size() labels in [0, 10)
  std::size_t size() const noexcept { return labels.size(); }
  std::size_t features() const noexcept { return rows * cols; }
};

/// Loads `<dir>/<prefix>-images-idx3-ubyte[.gz]` and the matching labels
/// (prefix "train" or "t10k"), checking that they agree.
inline dataset load_mnist_like(const std::filesystem::path& dir, const std::string& prefix) {
  auto pick = [&](const std::string& stem) {
    for (const char* ext : {".gz", ""}) {
      auto p = dir / (stem + ext);
      if (std::filesystem::exists(p)) return p;
    }
    throw config_error(str("data file ", (dir / (stem + ".gz")).string(),
                           " does not exist (install the Debian package dataset-fashion-mnist, "
                           "or pass --data DIR with MNIST-format files)"));
  };
  const idx_tensor images = read_idx(pick(prefix + "-images-idx3-ubyte"), 3);
  const idx_tensor labels = read_idx(pick(prefix + "-labels-idx1-ubyte"), 1);
  if (images.dims[0] != labels.dims[0])
    throw decode_error(str(prefix, " set has ", images.dims[0], " images but ", labels.dims[0],
                           " labels"));
  dataset d;
  d.rows = images.dims[1];
  d.cols = images.dims[2];
  d.pixels.resize(images.data.size());
  for (std::size_t i = 0; i < images.data.size(); ++i) d.pixels[i] = images.data[i] / 255.0F;
  d.labels = labels.data;
  for (std::size_t i = 0; i < d.labels.size(); ++i)
    if (d.labels[i] > 9)
      throw decode_error(str(prefix, " label ", i, " is ", unsigned{d.labels[i]}, ", expected 0..9"));
  return d;
}

}  // namespace greenreduce::examples
