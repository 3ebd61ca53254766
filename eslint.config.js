// Type-aware linting: above all floating and misused promises, in a service where an unhandled rejection once exited 0.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'test/support/*.mjs', 'bench/*.mjs', 'eslint.config.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test runs what describe() and it() return; nothing is left floating there.
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] },
            { from: 'file', path: 'test/support/timedTests.ts', name: ['it'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      // Interfaces that return promises are often met by functions with nothing to await.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Each test and hook gets its timeout there: --test-timeout cannot give one on every Node (test/run.ts says why).
    files: ['test/**/*.ts'],
    ignores: ['test/support/timedTests.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: [{ name: 'node:test', message: 'import describe, it, before and after from test/support/timedTests.ts' }] },
      ],
    },
  },
);
