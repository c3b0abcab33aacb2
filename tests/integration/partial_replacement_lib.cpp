// A library of a program that replaces operator new(size_t) and operator
// delete(void*) (partial_replacement.cpp): its static initialiser
// allocates through derived forms before any constructor of the preloaded
// library has run.
#include <new>
#include <string>
#include <vector>

namespace {

int built() {
  std::vector<std::string> v;  // new, and the sized delete of each buffer it outgrows
  for (int i = 0; i < 100; ++i) v.push_back(std::string(30 + i, 'x'));
  int* array = new int[4];  // new[] and delete[]
  delete[] array;
  int* maybe = new (std::nothrow) int[4];
  delete[] maybe;
  return static_cast<int>(v.size());
}

}  // namespace

int g_built_early = built();
