import { runWorker } from './worker.js';

// The module node:cluster forks for each worker (see Supervisor).
runWorker();
