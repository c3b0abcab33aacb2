// A capped pool of fixed-size objects: construct, destroy, watch its metrics.
#include <cstdio>
#include <new>
#include <poolmalloc.hpp>

struct Order {
  long id;
  double price;
  int quantity;
};

int main() {
  poolmalloc::fixed_pool<poolmalloc::single_thread> orders(sizeof(Order), {.initial_blocks = 64, .max_blocks = 100});
  Order* live[100];
  for (int i = 0; i < 100; ++i) live[i] = orders.create<Order>(Order{i, 1.5 * i, i % 7});
  if (orders.try_allocate() != nullptr) return 1;  // at the cap
  try {
    orders.allocate();
    return 1;
  } catch (const std::bad_alloc&) {
    std::puts("the 101st order is refused: the pool is capped at 100");
  }
  for (Order* o : live) orders.destroy(o);
  auto s = orders.stats();
  std::printf("block %zu bytes, in use %zu, peak %zu, capacity %zu, grows %zu, reserved %zu bytes\n",
              s.block_size, s.in_use, s.peak_in_use, s.capacity, s.grows, s.reserved_bytes);
  return s.in_use == 0 && s.peak_in_use == 100 ? 0 : 1;
}
