import type { CodegenConfig } from '@graphql-codegen/cli'

// Typed resolvers from the SDL. The output is committed; `npm run codegen:check` fails CI when it is stale.
const config: CodegenConfig = {
  schema: 'schema/schema.graphql',
  generates: {
    'src/generated/graphql.ts': {
      plugins: ['typescript', 'typescript-resolvers'],
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        strictScalars: true,
        useIndexSignature: true,
        contextType: '../graphql/context.js#Context',
        mappers: { Upload: '../model/record.js#UploadView' },
        scalars: {
          ID: 'string',
          File: '../core/ingest/ingest.js#IncomingFile',
          SafeInt: 'number',
          DateTime: 'string',
        },
      },
    },
    // A typed client for the example in examples/client: the client preset types each document it finds.
    'examples/client/gql/': {
      preset: 'client',
      documents: ['examples/client/**/*.ts', '!examples/client/gql/**'],
      config: {
        documentMode: 'string',
        // ESM imports with .js endings, as NodeNext wants.
        emitLegacyCommonJSImports: false,
        useTypeImports: true,
        enumsAsTypes: true,
        scalars: { SafeInt: 'number', DateTime: 'string', File: 'Blob | null', ID: 'string' },
      },
      presetConfig: { fragmentMasking: false },
    },
  },
}

export default config
