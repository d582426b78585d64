// @ts-check
import eslint from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'dist-test/', 'node_modules/', 'data/', 'training/**/*.py', 'eslint.config.mjs'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  prettier,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: { project: ['./tsconfig.test.json'], tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after'] },
          ],
        },
      ],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
      '@typescript-eslint/no-extraneous-class': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // supertest's res.body is `any` by design; assertions check its shape.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
  // Dependencies point one way: domains -> runtime, auth, audit, common; runtime -> common.
  {
    files: ['src/runtime/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/domains/**', '**/auth/**', '**/audit/**'],
              message: 'The runtime knows nothing of domains, auth or audit.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/common/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'onnxruntime-node', message: 'Only src/runtime talks to ONNX Runtime.' }],
          patterns: [
            {
              group: ['**/runtime/**', '**/domains/**', '**/auth/**', '**/audit/**'],
              message: 'common/ depends on nothing above it.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/domains/**/*.ts', 'src/auth/**/*.ts', 'src/audit/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: 'onnxruntime-node',
              message: 'Ask the runtime (InferenceEngine) to run a model; never ORT directly.',
            },
          ],
          patterns: [
            {
              group: ['**/runtime/worker-pool/**', '**/runtime/batcher/**'],
              message: 'Use the runtime through InferenceEngine.',
            },
          ],
        },
      ],
    },
  },
  // Cross-cutting layers never reach up into domains; the database layer knows only its entities.
  {
    files: ['src/auth/**/*.ts', 'src/audit/**/*.ts', 'src/database/**/*.ts'],
    ignores: ['src/database/entities.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'onnxruntime-node', message: 'Only src/runtime talks to ONNX Runtime.' }],
          patterns: [
            { group: ['**/domains/**', '**/runtime/**'], message: 'auth, audit and database sit below the domains.' },
          ],
        },
      ],
    },
  },
);
