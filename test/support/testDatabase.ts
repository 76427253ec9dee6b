/** The tests' own database: TEST_DATABASE_URL, or `opsdesk_test` on the local server, as compose's (and `npm run services`'s) role. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ??
  "postgres://opsdesk:opsdesk@127.0.0.1:5432/opsdesk_test"
