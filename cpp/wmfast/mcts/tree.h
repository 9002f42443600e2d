// A batch of search trees in one preallocated arena, holding mctx's Tree fields
// (github.com/google-deepmind/mctx, mctx/_src/tree.py) so trees can be compared node for node.
//
// B trees of `num_nodes` node slots each, A actions per node. Node 0 is the root; a node first
// expanded by simulation s gets the index first_new + s, so a parent's index is always below its
// children's. Q(s, a) = reward + discount * value of the child reached by a.
//
// Layout: one record per node (a node's own statistics, then each edge field as A contiguous
// entries), records of a tree consecutive. Selecting from a node reads its visits, value, Q,
// priors and edge visits from one run of adjacent cache lines, where separate [B, N, A] arrays
// cost a line (and a likely miss) per array. The reward and discount of the transition into a
// node are kept in the node's own statistics, which the backup reads anyway: backing up through
// a node touches only the lines selection touches. mctx's per-edge children_values,
// children_rewards and children_discounts are therefore derived from the children when the trees
// are inspected (DeriveEdgeFields); its other fields are strided views of the records (Fields).
//
// The arena comes from the block cache and is not cleared: a node's record is initialised when
// the node is created (Create), so a search touches only the nodes it makes. A node's prior
// softmax is computed when the search first descends from it (most leaves never are).
#ifndef WMFAST_MCTS_TREE_H_
#define WMFAST_MCTS_TREE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "wmfast/common/block_cache.h"

namespace wmfast::mcts {

inline constexpr int32_t kRootIndex = 0;   // index of every tree's root node
inline constexpr int32_t kNoParent = -1;   // parents/action_from_parent of the root
inline constexpr int32_t kUnvisited = -1;  // children index of an action never expanded

// Where a field of mctx's Tree lives: one entry per node (per_edge false) or A consecutive
// entries (per_edge true) at `data` + node_bytes * (b * num_nodes + n).
struct TreeField {
  const char* name;  // mctx's name
  bool is_float;     // float32, else int32
  bool per_edge;
  const void* data;
  int64_t node_bytes;
};

class Tree {
 public:
  // Node statistics: words 0-7 of a record. kReward and kDiscount belong to the transition
  // from the parent into this node (the discount already multiplied by the search's).
  static constexpr int64_t kNodeVisits = 0, kRawValue = 1, kNodeValue = 2, kParent = 3,
                           kActionFromParent = 4, kPriorsReady = 5, kReward = 6, kDiscount = 7,
                           kHeaderWords = 8;
  // Edge fields in the order selection reads them; field f starts at word kHeaderWords + f * A.
  enum EdgeField : int64_t {
    kQ = 0,        // reward + discount * value of the child (cached: selection reads it)
    kPriors,       // softmax of the prior logits (once priors_ready)
    kVisits,       // visits through each action
    kChildren,     // child node, kUnvisited if unexpanded
    kPriorLogits,  // prior logits (root: masked and noised)
    kNumEdgeFields
  };

  Tree(int64_t batch_size, int64_t num_nodes, int num_actions);

  // Flat id of node `n` of tree `b`.
  int64_t Node(int64_t b, int64_t n) const { return b * num_nodes + n; }

  // Initialises the record of a new node: no visits, no children, parent kNoParent, zero
  // statistics; its prior logits are left for the caller to write.
  void Create(int64_t id);
  bool created(int64_t id) const { return created_[id] != 0; }
  // Creates every node never created (empty records), so whole arrays can be inspected.
  void CreateUnused();
  // Copies node `from` of `other` (same num_actions) into node `id` of this tree.
  void CopyNode(int64_t id, const Tree& other, int64_t from);
  // Fills mctx's per-edge children_values, children_rewards and children_discounts from the
  // children's own statistics (zero for unexpanded edges), for Fields.
  void DeriveEdgeFields();

  // Node statistics of node id.
  int32_t& node_visits(int64_t id) { return Word<int32_t>(id, kNodeVisits); }
  float& raw_value(int64_t id) { return Word<float>(id, kRawValue); }
  float& node_value(int64_t id) { return Word<float>(id, kNodeValue); }
  int32_t& parent(int64_t id) { return Word<int32_t>(id, kParent); }
  int32_t& action_from_parent(int64_t id) { return Word<int32_t>(id, kActionFromParent); }
  int32_t& priors_ready(int64_t id) { return Word<int32_t>(id, kPriorsReady); }
  float& reward(int64_t id) { return Word<float>(id, kReward); }
  float& discount(int64_t id) { return Word<float>(id, kDiscount); }
  int32_t node_visits(int64_t id) const { return Word<int32_t>(id, kNodeVisits); }
  float raw_value(int64_t id) const { return Word<float>(id, kRawValue); }
  float node_value(int64_t id) const { return Word<float>(id, kNodeValue); }
  int32_t parent(int64_t id) const { return Word<int32_t>(id, kParent); }
  int32_t action_from_parent(int64_t id) const { return Word<int32_t>(id, kActionFromParent); }
  int32_t priors_ready(int64_t id) const { return Word<int32_t>(id, kPriorsReady); }
  float reward(int64_t id) const { return Word<float>(id, kReward); }
  float discount(int64_t id) const { return Word<float>(id, kDiscount); }

  // The A entries of an edge field of node id.
  float* q(int64_t id) { return Edges<float>(id, kQ); }
  float* priors(int64_t id) { return Edges<float>(id, kPriors); }
  int32_t* visits(int64_t id) { return Edges<int32_t>(id, kVisits); }
  int32_t* children(int64_t id) { return Edges<int32_t>(id, kChildren); }
  float* prior_logits(int64_t id) { return Edges<float>(id, kPriorLogits); }
  const float* q(int64_t id) const { return Edges<float>(id, kQ); }
  const float* priors(int64_t id) const { return Edges<float>(id, kPriors); }
  const int32_t* visits(int64_t id) const { return Edges<int32_t>(id, kVisits); }
  const int32_t* children(int64_t id) const { return Edges<int32_t>(id, kChildren); }
  const float* prior_logits(int64_t id) const { return Edges<float>(id, kPriorLogits); }

  // Asks for the first `words` words of node id's edge field to be cached.
  void Prefetch(int64_t id, EdgeField field, int64_t words) const {
    PrefetchWords(id, kHeaderWords + field * num_actions, words);
  }
  // Asks for node id's own statistics to be cached.
  void PrefetchStatistics(int64_t id) const { PrefetchWords(id, 0, kHeaderWords); }
  // Asks for what selecting from node id reads: its statistics, Q, priors and edge visits (one
  // run of lines at the record's start).
  void PrefetchSelection(int64_t id) const {
    PrefetchWords(id, 0, kHeaderWords + (kVisits + 1) * num_actions);
  }

  // mctx's Tree fields (root_invalid_actions aside); the derived ones as of the last
  // DeriveEdgeFields.
  std::vector<TreeField> Fields() const;

  int64_t batch_size;  // B
  int64_t num_nodes;   // node slots per tree
  int num_actions;     // A
  std::vector<uint8_t> root_invalid_actions;  // [B, A] 1 where an action is illegal at the root

 private:
  template <typename T>
  T& Word(int64_t id, int64_t word) {
    return *reinterpret_cast<T*>(words_ + id * record_words_ + word);
  }
  template <typename T>
  const T& Word(int64_t id, int64_t word) const {
    return *reinterpret_cast<const T*>(words_ + id * record_words_ + word);
  }
  template <typename T>
  T* Edges(int64_t id, EdgeField field) {
    return &Word<T>(id, kHeaderWords + field * num_actions);
  }
  template <typename T>
  const T* Edges(int64_t id, EdgeField field) const {
    return &Word<T>(id, kHeaderWords + field * num_actions);
  }

  void PrefetchWords(int64_t id, int64_t first_word, int64_t words) const;

  int64_t record_words_;  // a whole number of 64-byte lines
  Block block_;
  uint32_t* words_;
  std::vector<uint8_t> created_;  // [B, N] 1 once the node's record is initialised
  // [B, N, A] mctx's children_values, children_rewards, children_discounts (DeriveEdgeFields)
  std::vector<float> edge_values_, edge_rewards_, edge_discounts_;
};

// Node capacity for trees continuing from old node new_roots[b] of each tree of `old`
// (kUnvisited: a fresh root), then running num_simulations more: the largest kept subtree plus
// one node per simulation.
int64_t SubtreeCapacity(const Tree& old, const std::vector<int32_t>& new_roots,
                        int num_simulations);

// Numbers the nodes of tree b's subtree under old node `root` in the order of their old indices
// (root -> 0), leaving out the subtrees under the root's edges for which drop_edge(edge) is
// true; old_to_new[n] is -1 for every node left out. Returns how many nodes are kept.
int32_t NumberSubtree(const Tree& old, int64_t b, int32_t root,
                      const std::function<bool(int32_t edge)>& drop_edge,
                      std::vector<int32_t>* old_to_new);

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_TREE_H_
