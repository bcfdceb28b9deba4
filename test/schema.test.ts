import { buildClientSchema, getIntrospectionQuery, type IntrospectionQuery } from 'graphql'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { gql } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

describe('the served schema', () => {
  it('keeps the SDL’s descriptions of the custom scalars (GraphiQL’s docs and codegen from the URL read them)', async () => {
    const { data } = await gql<IntrospectionQuery>(server.url, getIntrospectionQuery())
    const schema = buildClientSchema(data!)
    expect(schema.getType('SafeInt')?.description).toMatch(/GraphQL's Int stops at 2 GiB/)
    expect(schema.getType('File')?.description).toMatch(/multipart request/)
    expect(schema.getType('DateTime')?.description).toMatch(/ISO 8601/)
  })

  it('still parses them as before (the description moved, not the behaviour)', async () => {
    const result = await gql(server.url, 'query ($id: ID!) { upload(id: $id) { id } }', { id: 'x' })
    expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND')
    const bad = await gql(server.url, 'mutation { setSpeed(id: "x", speed: 1.5) { id } }')
    expect(bad.errors?.[0]?.message).toMatch(/SafeInt must be a whole number/)
  })
})
