import { makeExecutableSchema } from '@graphql-tools/schema'
import { readFileSync } from 'node:fs'
import type { Context } from './context.js'
import { resolvers } from './resolvers.js'

/** The SDL in schema/ is the one source of truth; resolvers are typed from it by codegen. */
export const typeDefs = readFileSync(new URL('../../schema/schema.graphql', import.meta.url), 'utf8')

export const schema = makeExecutableSchema<Context>({ typeDefs, resolvers })
