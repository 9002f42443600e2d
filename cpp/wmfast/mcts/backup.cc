#include "wmfast/mcts/backup.h"

#include <stdexcept>

#include "wmfast/common/check.h"

namespace wmfast::mcts {

void ThrowBackupOverflow(int64_t b, float value, float reward, float discount) {
  throw std::invalid_argument(StrCat(
      "the search's backed-up values overflowed float32 in tree ", b,
      " (batch index): reward + discount * value = ", value, " with reward ", reward,
      " and discount ", discount,
      "; the model's rewards and values must stay well inside float32's range "
      "(|x| < 3.4e38): rescale them (e.g. wmfast.transforms.h)"));
}

}  // namespace wmfast::mcts
