/* The patterns' random numbers: a xorshift generator with a fixed seed, so
 * that every allocator sees the same sequence of requests. */
#pragma once

static unsigned long long g_state = 88172645463325252ull;

static inline unsigned long long next_random(void) {
  g_state ^= g_state << 13;
  g_state ^= g_state >> 7;
  g_state ^= g_state << 17;
  return g_state;
}
