// greenreduce/core/version.hpp — the library version, in one place.
//
// CMake reads GREENREDUCE_VERSION_{MAJOR,MINOR,PATCH} from this file, so the
// package version and the header can never disagree.
#pragma once

#define GREENREDUCE_VERSION_MAJOR 0
#define GREENREDUCE_VERSION_MINOR 1
#define GREENREDUCE_VERSION_PATCH 0

#include <string_view>

namespace greenreduce {

/// "MAJOR.MINOR.PATCH" of the headers this translation unit was compiled with.
inline constexpr std::string_view version_string = "0.1.0";

static_assert(GREENREDUCE_VERSION_MAJOR == 0 && GREENREDUCE_VERSION_MINOR == 1 &&
                  GREENREDUCE_VERSION_PATCH == 0,
              "version_string must match the GREENREDUCE_VERSION_* macros");

}  // namespace greenreduce
