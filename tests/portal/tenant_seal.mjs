// The tenant seal in the browser: users of school 999001 opening 999002's pages by address get nothing of them.
import {scenario, signIn, shot, step, check, BASE, FIXTURE} from './lib.mjs';

const {password, foreign_outcome: foreignOutcome} = FIXTURE;
const OTHER_SCHOOL_NAME = '足跡實驗高級中學';

async function nothingOf(page, address, apiPath, secret) {
  const answered = page.waitForResponse(r => r.url().includes(apiPath));
  await page.goto(`${BASE}/#${address}`);
  check((await answered).status() === 404, `${address}: the API answers 404`);
  await page.getByRole('heading', {name: '找不到這個頁面'}).waitFor();
  const text = await page.locator('main').innerText();
  for (const leak of [OTHER_SCHOOL_NAME, secret].filter(Boolean)) check(!text.includes(leak), `${address} shows ${leak}`);
  check(await page.locator('main table, main form').count() === 0, `${address} shows no table or form`);
}

await scenario('tenant_seal', async ({open}) => {
  const admin = await open();
  await signIn(admin, {school: '999001', username: 'admin', password});
  await admin.getByRole('heading', {name: '資料匯入'}).waitFor();
  for (const [page, api] of [['imports', '/records/schools/999002/terms'], ['windows', '/records/schools/999002/terms'],
                             ['status', '/records/schools/999002/terms'], ['users', '/schools/999002/users'],
                             ['submissions', '/exchange/schools/999002/submissions']]) {
    await nothingOf(admin, `/school/999002/${page}`, api);
  }
  await shot(admin, 'seal-01-staff');
  step('staff pages of another school show nothing of it');

  const student = await open();
  await signIn(student, {school: '999001', username: 'student01', password});
  await student.getByRole('heading', {name: '我的課程'}).waitFor();
  await nothingOf(student, `/student/outcomes/${foreignOutcome}`, `/intake/outcomes/${foreignOutcome}`, '999002 的秘密成果');
  const teacher = await open();
  await signIn(teacher, {school: '999001', username: 'teacher01', password});
  await teacher.getByRole('heading', {name: '課程學習成果認證'}).waitFor();
  await nothingOf(teacher, `/teacher/outcomes/${foreignOutcome}`, `/certification/outcomes/${foreignOutcome}`, '999002 的秘密成果');
  await shot(student, 'seal-02-student');
  step("another school's outcome shows nothing of it");
});
