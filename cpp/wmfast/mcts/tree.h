// A batch of search trees in one preallocated struct-of-arrays arena, in mctx's Tree layout
// (github.com/google-deepmind/mctx, mctx/_src/tree.py) so trees can be compared node for node.
//
// B trees of `num_nodes` node slots each, A actions per node. Node 0 is the root; a node first
// expanded by simulation s gets the index first_new + s, so a parent's index is always below its
// children's. Edge statistics (prior, visits, value, reward, discount) live on the parent, in
// [B, num_nodes, A] arrays; Q(s, a) = children_rewards + children_discounts * children_values.
// Nothing is allocated after construction. A node's prior softmax is computed when the search
// first descends from it (most leaves never are), so expansion only copies logits.
#ifndef WMFAST_MCTS_TREE_H_
#define WMFAST_MCTS_TREE_H_

#include <cstdint>
#include <vector>

namespace wmfast::mcts {

inline constexpr int32_t kRootIndex = 0;   // index of every tree's root node
inline constexpr int32_t kNoParent = -1;   // parents/action_from_parent of the root
inline constexpr int32_t kUnvisited = -1;  // children_index of an action never expanded

struct Tree {
  Tree(int64_t batch_size, int64_t num_nodes, int num_actions)
      : batch_size(batch_size),
        num_nodes(num_nodes),
        num_actions(num_actions),
        node_visits(batch_size * num_nodes, 0),
        raw_values(batch_size * num_nodes, 0.0f),
        node_values(batch_size * num_nodes, 0.0f),
        parents(batch_size * num_nodes, kNoParent),
        action_from_parent(batch_size * num_nodes, kNoParent),
        children_index(batch_size * num_nodes * num_actions, kUnvisited),
        children_prior_logits(batch_size * num_nodes * num_actions, 0.0f),
        children_priors(batch_size * num_nodes * num_actions, 0.0f),
        children_visits(batch_size * num_nodes * num_actions, 0),
        children_values(batch_size * num_nodes * num_actions, 0.0f),
        children_q(batch_size * num_nodes * num_actions, 0.0f),
        children_rewards(batch_size * num_nodes * num_actions, 0.0f),
        children_discounts(batch_size * num_nodes * num_actions, 0.0f),
        root_invalid_actions(batch_size * num_actions, 0),
        priors_ready(batch_size * num_nodes, 0) {}

  // Flat index of node `n` of tree `b` in the [B, num_nodes] arrays.
  int64_t Node(int64_t b, int64_t n) const { return b * num_nodes + n; }
  // Flat index of the first edge of that node in the [B, num_nodes, A] arrays.
  int64_t Edges(int64_t b, int64_t n) const { return Node(b, n) * num_actions; }

  int64_t batch_size;  // B
  int64_t num_nodes;   // node slots per tree
  int num_actions;     // A

  std::vector<int32_t> node_visits;          // [B, N] visits (1 after the node's evaluation)
  std::vector<float> raw_values;             // [B, N] the model's value of the node
  std::vector<float> node_values;            // [B, N] running mean of the backed-up returns
  std::vector<int32_t> parents;              // [B, N] parent node, kNoParent at the root
  std::vector<int32_t> action_from_parent;   // [B, N] action leading here, kNoParent at the root
  std::vector<int32_t> children_index;       // [B, N, A] child node, kUnvisited if unexpanded
  std::vector<float> children_prior_logits;  // [B, N, A] prior logits (root: masked and noised)
  std::vector<float> children_priors;        // [B, N, A] softmax of children_prior_logits (filled
                                             // when the node is first searched from, or by
                                             // CompletePriors)
  std::vector<int32_t> children_visits;      // [B, N, A] visits through each action
  std::vector<float> children_values;        // [B, N, A] node_values of the child
  std::vector<float> children_q;             // [B, N, A] rewards + discounts * values (cached for
                                             // selection: fewer arrays to read per node)
  std::vector<float> children_rewards;       // [B, N, A] reward of the transition
  std::vector<float> children_discounts;     // [B, N, A] discount * the model's step discount
  std::vector<uint8_t> root_invalid_actions;  // [B, A] 1 where an action is illegal at the root
  std::vector<uint8_t> priors_ready;          // [B, N] 1 once children_priors holds the softmax
};

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_TREE_H_
