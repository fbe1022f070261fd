// Work sharing for the package's CPU kernels (bases/native_build.py compiles them with this folder on
// the include path).
#ifndef KAN_PARALLEL_CHUNKS_H_
#define KAN_PARALLEL_CHUNKS_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

namespace kan {

// Runs body(chunk) for chunk in [0, chunks) on the calling thread and up to num_threads() - 1 tasks of
// `pool` (XLA's intra-op thread pool in the FFI handlers). Chunks are taken from a shared counter, so
// the caller never waits for a task that has not started: it only waits for chunks already taken,
// which are running. Tasks that start after the work is gone find the counter exhausted and return;
// the state they touch is shared-owned, so they may outlive the call.
template <typename Pool, typename Body>
void parallel_chunks(Pool& pool, int64_t chunks, Body body) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, chunks, body]() {
    for (int64_t c = state->next.fetch_add(1); c < chunks; c = state->next.fetch_add(1)) {
      body(c);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), chunks) - 1;
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule(decltype(work)(work));
  work();
  while (state->done.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
}

}  // namespace kan

#endif  // KAN_PARALLEL_CHUNKS_H_
