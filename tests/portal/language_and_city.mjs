// zh-TW first with an English switch (kept across reloads, server messages follow it), and the city admin.
import {scenario, signIn, shot, step, check, FIXTURE} from './lib.mjs';

const {password} = FIXTURE;

await scenario('language_and_city', async ({open}) => {
  const page = await open({lang: 'zh-TW'});
  await page.goto(`${process.env.PORTAL_URL}/#/login`);
  await page.getByRole('heading', {name: '登入'}).waitFor();
  check(await page.evaluate(() => document.documentElement.lang) === 'zh-TW', 'zh-TW first');
  await shot(page, 'login-zh-TW');
  await page.locator('#lang-switch').click();
  await page.getByRole('heading', {name: 'Sign in'}).waitFor();
  check(await page.evaluate(() => document.documentElement.lang) === 'en', 'the document says it is English');
  await shot(page, 'login-en');
  step('english after the switch');

  await signIn(page, {school: '999001', username: 'nobody', password: 'wrong-password'});
  await page.getByRole('alert').getByText('Wrong school code, username or password.').waitFor();
  await page.locator('#lang-switch').click();
  await signIn(page, {school: '999001', username: 'nobody', password: 'wrong-password'});
  await page.getByRole('alert').getByText('學校代碼、帳號或密碼錯誤。').waitFor();
  step('server messages in the current language');

  await page.locator('#lang-switch').click();
  await signIn(page, {school: '999001', username: 'student01', password});
  await page.getByRole('heading', {name: 'My courses'}).waitFor();
  await page.reload();
  await page.getByRole('heading', {name: 'My courses'}).waitFor();
  await page.getByRole('link', {name: 'Selection'}).waitFor();
  await shot(page, 'student-courses-en');
  await page.locator('#lang-switch').click();
  await page.getByRole('heading', {name: '我的課程'}).waitFor();
  step('kept after a reload');

  const city = await open();
  await signIn(city, {school: 'TPE', username: 'cityadmin', password});
  await city.getByRole('heading', {name: '臺北市各校'}).waitFor();
  for (const name of ['足跡示範高級中學', '足跡實驗高級中學']) await city.getByRole('cell', {name}).waitFor();
  const scoped = city.waitForResponse(r => r.url().includes('/statistics?year=112'));
  await city.getByLabel('統計範圍').selectOption('year:112');
  check((await scoped).status() === 200, 'the city statistics of school year 112');
  await city.locator('#city-scope option[value="year:112"]:checked').waitFor({state: 'attached'}); // re-rendered
  const first = city.locator('.table-wrap tr', {hasText: '足跡示範高級中學'});
  const students = Number(await first.locator('td').nth(3).innerText());
  check(students >= 6, `999001's students side by side (${students})`);
  await shot(city, 'city-01-schools');
  step('city schools side by side');
});
