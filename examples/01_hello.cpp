// 01_hello — the smallest greenreduce program.
//
// greenreduce is header-only: link the `greenreduce::greenreduce` CMake target
// (it only adds include paths and the Boost, xsimd and threads dependencies)
// and include the umbrella header. Nothing else is initialised; there is no
// global state to set up.
//
//   $ ./build/examples/01_hello
//   greenreduce 0.1.0
#include <greenreduce/greenreduce.hpp>

#include <iostream>

int main() {
  std::cout << "greenreduce " << greenreduce::version_string << '\n';
  return 0;
}
