// The batched model interface that tree search calls, independent of how the model runs.
//
// A search keeps every node's latent state in a store owned by the evaluator, addressed by an
// integer slot (the search numbers them; see mcts::Search::Slot). Once per simulation the search
// hands the evaluator one leaf per tree: the slot of the parent's latent, the action taken from
// it, and the slot that receives the next latent. The evaluator runs the model's recurrent
// function on the whole batch, stores the next latents and writes the small per-leaf outputs
// (reward, discount, policy logits, value) into buffers the search owns. Backends (a Python
// callback, libtorch eager, AOTInductor packages) implement this interface; the search never
// knows which one it talks to, in the spirit of KataGo's NNEvaluator.
//
// Threading: Evaluate is called from one thread at a time (the search's driving thread), unless
// the evaluator's max_concurrent_calls() says it takes more: then a search may split its trees
// into that many shards and evaluate their (disjoint) leaves concurrently, one call per shard.
#ifndef WMFAST_MODEL_EVALUATOR_H_
#define WMFAST_MODEL_EVALUATOR_H_

#include <cstdint>
#include <stdexcept>
#include <string>

namespace wmfast {
class ThreadPool;
}  // namespace wmfast

namespace wmfast::model {

// One batch of leaves to evaluate. Arrays are owned by the caller and hold `size` entries.
struct LeafBatch {
  int64_t size = 0;                      // number of leaves (one per tree)
  const int64_t* source_slots = nullptr;  // [size] slot of the latent the action is applied to
  const int64_t* actions = nullptr;       // [size] action index in [0, num_actions)
  const int64_t* target_slots = nullptr;  // [size] slot where the next latent is stored
  // Search threads idle during this call, which the evaluator may use to share its copies of
  // latents (ThreadPool::ParallelFor from the calling thread); nullptr: none.
  ThreadPool* helpers = nullptr;
  // Continuous actions ([size, action_dim] float32), handed to the model instead of `actions`
  // when set (Sampled MuZero); nullptr: discrete actions.
  const float* continuous_actions = nullptr;
  int64_t action_dim = 0;
};

// Caller-owned output buffers for one LeafBatch; the evaluator fills every entry.
struct LeafOutputs {
  float* rewards = nullptr;    // [size] reward of the transition
  float* discounts = nullptr;  // [size] per-step discount from the model; 1 when it gives none
  float* logits = nullptr;     // [size, num_actions] prior policy logits at the next state
  float* values = nullptr;     // [size] value estimate of the next state
};

// Raised when a model output has the wrong dtype (the bindings turn it into TypeError); shape,
// device and finiteness errors are std::invalid_argument (ValueError).
class InvalidType : public std::invalid_argument {
 public:
  explicit InvalidType(const std::string& message) : std::invalid_argument(message) {}
};

class Evaluator {
 public:
  virtual ~Evaluator() = default;

  // Runs the recurrent model on `leaves`, stores the next latents at the target slots and fills
  // `outputs`. Throws std::invalid_argument (or InvalidType) naming the offending output field
  // when the model returns something malformed or non-finite.
  virtual void Evaluate(const LeafBatch& leaves, const LeafOutputs& outputs) = 0;

  // How many Evaluate calls on disjoint leaves may run at once (1: one at a time).
  virtual int max_concurrent_calls() const { return 1; }
};

}  // namespace wmfast::model

#endif  // WMFAST_MODEL_EVALUATOR_H_
