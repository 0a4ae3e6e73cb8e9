// Smallest downstream program: includes the umbrella header, checks the
// version it sees against the one the package test expects, and round-trips a
// frame through the installed headers.
#include <greenreduce/greenreduce.hpp>

#include <cstdio>
#include <string_view>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  if (greenreduce::version_string != std::string_view(argv[1])) {
    std::fprintf(stderr, "headers say %s, package says %s\n",
                 greenreduce::version_string.data(), argv[1]);
    return 1;
  }
  std::vector<std::byte> f(greenreduce::frame_header_bytes + 4);
  greenreduce::finish_frame(f, greenreduce::codec_id::none, 1, 4, true);
  auto v = greenreduce::parse_frame(f);
  std::printf("greenreduce %s consumed: frame of %zu bytes\n", greenreduce::version_string.data(),
              v.frame_bytes());
  return v.frame_bytes() == f.size() ? 0 : 1;
}
