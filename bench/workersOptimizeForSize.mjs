// For npm run bench only: gives the workers --optimize-for-size too (the primary gets it from run.sh), the setting the
// service does not use, so that both can be measured side by side. Loaded with NODE_OPTIONS=--import, which reaches
// the primary and the workers; only the primary forks. (cluster.fork() calls setupPrimary() again, without settings.)
import cluster from 'node:cluster';

if (cluster.isPrimary) {
  const setupPrimary = cluster.setupPrimary.bind(cluster);
  cluster.setupPrimary = (settings = {}) => {
    const execArgv = settings.execArgv ?? cluster.settings.execArgv ?? process.execArgv;
    setupPrimary({ ...settings, execArgv: execArgv.includes('--optimize-for-size') ? execArgv : [...execArgv, '--optimize-for-size'] });
  };
}
