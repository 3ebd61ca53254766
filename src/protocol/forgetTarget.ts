import { MatrixError } from './matrixError.js';
import { isNodeLocalpart } from './nodeId.js';

/** The records `users forget` names: 'all', or node addresses only; anything else is refused (400). */
export function forgetTarget(which: unknown): readonly string[] | 'all' {
  if (which === 'all') return 'all';
  if (Array.isArray(which) && which.length > 0 && which.every((localpart) => isNodeLocalpart(localpart))) return which;
  throw new MatrixError(400, 'M_INVALID_PARAM', 'forget takes "all" or node addresses (0x and 40 lowercase hex digits)');
}
