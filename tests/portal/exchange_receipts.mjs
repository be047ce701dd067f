// The central submission in the browser: staff submit the term, follow the package until the central database
// received it and read the receipts; a student reads their receipt and raises a dispute; staff reject it; the
// student then confirms the receipt (確認收訖明細) and staff see who confirmed and confirm for the school.
import {scenario, signIn, shot, step, check, FIXTURE} from './lib.mjs';

const {password} = FIXTURE;

async function reloadUntil(page, locator, what) {
  const deadline = Date.now() + 30_000; // the package is built and sent in the background
  for (;;) {
    if (await locator.count()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await page.reload();
    await page.locator('main h1').first().waitFor();
    await page.waitForLoadState('networkidle');
  }
}

await scenario('exchange_receipts', async ({open}) => {
  const admin = await open();
  await signIn(admin, {school: '999001', username: 'admin', password});
  await admin.getByRole('link', {name: '提交中央'}).click();
  await admin.getByRole('heading', {name: '提交中央資料庫'}).waitFor();
  await admin.getByLabel('範圍').selectOption('term');
  await admin.getByRole('button', {name: '提交', exact: true}).click();
  await admin.getByRole('heading', {name: /11201 學期基本資料與修課紀錄/}).waitFor();
  await reloadUntil(admin, admin.locator('[data-state="received"]'), 'the central receipt');
  await admin.getByRole('cell', {name: /^林同學/}).waitFor();
  await shot(admin, 'exchange-01-submission');
  step('term submitted and received');

  const student = await open();
  await signIn(student, {school: '999001', username: 'student01', password});
  await student.getByRole('link', {name: '收訖明細'}).click();
  await student.getByRole('heading', {name: '收訖明細', level: 1}).waitFor();
  const row = student.locator('tr', {hasText: '國語文'});
  await row.getByText('已收訖').waitFor();
  await row.getByRole('button', {name: '提出疑義'}).click();
  await row.getByLabel('疑義說明').fill('成績與學分數不符。');
  await row.getByRole('button', {name: '送出'}).click();
  await student.locator('#status').getByText('疑義已送出。').waitFor();
  await student.locator('tr', {hasText: '國語文'}).getByText('已提出').waitFor();
  const confirmButton = student.getByRole('button', {name: '確認收訖明細'});
  check(await confirmButton.isDisabled(), 'no confirmation while the dispute is open');
  await student.getByText('您的疑義尚未處理完畢，處理後才能確認。').waitFor();
  await shot(student, 'exchange-02-receipts');
  step('student raised a dispute on a receipt row');

  await admin.reload();
  const dispute = admin.locator('tr', {hasText: '成績與學分數不符。'});
  await dispute.waitFor();
  await dispute.getByText(/國語文/).waitFor(); // the row named by its course, not its key
  await dispute.getByLabel('駁回理由').fill('成績以教務處登錄為準。');
  await dispute.getByRole('button', {name: '駁回'}).click();
  await admin.locator('#status').getByText('疑義已駁回。').waitFor();
  await admin.locator('tr', {hasText: '成績與學分數不符。'}).getByText('已駁回').waitFor();
  await shot(admin, 'exchange-03-dispute-rejected');
  await student.reload();
  await student.locator('tr', {hasText: '國語文'}).getByText('已駁回').waitFor();
  check(await student.locator('tr', {hasText: '國語文'}).getByText('成績以教務處登錄為準。').count() === 1, 'the student reads why');
  step('staff rejected it and the student reads why');

  check(await confirmButton.isEnabled(), 'the dispute settled, the receipt can be confirmed');
  await confirmButton.click();
  await student.locator('#status').getByText('收訖明細已確認。').waitFor();
  await student.locator('[data-confirmed="true"]').getByText(/您已於 .* 確認第 1 版收訖明細。/).waitFor();
  check(await student.getByRole('button', {name: '確認收訖明細'}).count() === 0, 'no second confirmation offered');
  await shot(student, 'exchange-04-receipt-confirmed');
  step('student confirmed the receipt and sees it confirmed');

  await admin.reload();
  await admin.locator('tr', {hasText: /林同學/}).getByText('學生已確認').waitFor();
  await admin.locator('#confirmation-summary').getByText(/1 \/ \d+ 位學生已確認/).waitFor();
  await admin.getByRole('button', {name: '確認全校收訖明細'}).click();
  await admin.locator('#status').getByText('全校收訖明細已確認。').waitFor();
  await admin.locator('#confirmation-summary').getByText('學校已確認').waitFor();
  check(await admin.getByRole('button', {name: '確認全校收訖明細'}).count() === 0, 'the school confirms once per version');
  await shot(admin, 'exchange-05-school-confirmed');
  step('staff see who confirmed and confirm for the school');
});
