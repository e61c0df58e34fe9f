// The one assertion of the framework-free kernel tests: count, print a failure, go on.
#pragma once

#include <cstdio>
#include <string>

namespace pysparse::test {

inline int passed = 0, failed = 0;

inline void expect(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAIL %s\n", what.c_str());
  }
}

}  // namespace pysparse::test
