/** The tests' own database: TEST_DATABASE_URL, or `opsdesk_test` on the local server. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? "postgres://root@127.0.0.1:5432/opsdesk_test"
